#!/usr/bin/env bash
# Distributed training across two "hosts" on one machine (docs/distributed.md): two network
# namespaces, each with its own host name, joined by a veth pair whose addresses exist only on
# that link; mpirun starts one rank in each, the remote one through an rsh agent that enters
# its namespace, and the ranks talk over TCP on the link. The run must end with the same
# weights and metrics as one process training alone.
#
#   scripts/two_hosts.sh [CONVNET]     (as root; CONVNET built with --features mpi,
#                                       default target/release/convnet)
#
# With TWO_HOSTS_BENCH=1 it then also runs `convnet bench --distributed` on the seed network
# across the two namespaces (step time, time communicating, bytes per step over TCP).
#
# Needs iproute2 (ip), util-linux (unshare), OpenMPI and python3. Creates the namespaces, the
# link and a temporary folder, and removes them however it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
CONVNET="$(realpath "${1:-target/release/convnet}")"
ID=$$
NS_A="convnet-a-$ID" NS_B="convnet-b-$ID"
LINK_A="cva$ID" LINK_B="cvb$ID"
ADDR_A=10.231.0.1 ADDR_B=10.231.0.2 NET=10.231.0.0/24
WORK="$(mktemp -d)"

cleanup() {
    ip netns del "$NS_A" 2>/dev/null || true
    ip netns del "$NS_B" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

if ! ip netns add "$NS_A" 2>/dev/null; then
    echo "two_hosts.sh: skipped: cannot create network namespaces here (needs root with CAP_NET_ADMIN)"
    exit 0
fi
ip netns add "$NS_B"
ip link add "$LINK_A" type veth peer name "$LINK_B"
ip link set "$LINK_A" netns "$NS_A"
ip link set "$LINK_B" netns "$NS_B"
ip -n "$NS_A" addr add "$ADDR_A/24" dev "$LINK_A"
ip -n "$NS_B" addr add "$ADDR_B/24" dev "$LINK_B"
for ns in "$NS_A" "$NS_B"; do
    ip -n "$ns" link set lo up
done
ip -n "$NS_A" link set "$LINK_A" up
ip -n "$NS_B" link set "$LINK_B" up

# The rsh agent: mpirun calls it as `agent [options] HOST COMMAND...` to start its daemon on
# HOST; here HOST is the namespace of that address, with its own host name.
cat > "$WORK/agent" <<EOF
#!/usr/bin/env bash
while [[ "\$1" == -* ]]; do shift; done
host="\$1"; shift
case "\$host" in
    $ADDR_B) exec ip netns exec "$NS_B" unshare --uts /bin/sh -c "hostname host-b; \$*" ;;
    *) exec ip netns exec "$NS_A" unshare --uts /bin/sh -c "hostname host-a; \$*" ;;
esac
EOF
chmod +x "$WORK/agent"
printf '%s slots=1\n%s slots=1\n' "$ADDR_A" "$ADDR_B" > "$WORK/hosts"

# Small CIFAR-10-format data (1,280 training images, 256 of them for validation) and the seed
# network's config reading it.
python3 - "$WORK/data" <<'EOF'
import os, random, sys
out = sys.argv[1]
os.makedirs(out)
random.seed(7)
open(os.path.join(out, "batches.meta.txt"), "w").write(
    "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n")
for name, n in [(f"data_batch_{k}.bin", 256) for k in range(1, 6)] + [("test_batch.bin", 128)]:
    with open(os.path.join(out, name), "wb") as f:
        for _ in range(n):
            label = random.randrange(10)
            f.write(bytes([label]) + bytes((label * 20 + random.randrange(60)) % 256 for _ in range(3072)))
EOF
sed -e "s#^path = .*#path = \"$WORK/data\"#" -e 's#^validation = .*#validation = 256#' configs/cifar10-seed.toml > "$WORK/seed.toml"
ARGS=(train --config "$WORK/seed.toml" --epochs 2 --threads 1)

"$CONVNET" "${ARGS[@]}" --quiet --out "$WORK/alone" >/dev/null
echo "one process: done"

ip netns exec "$NS_A" unshare --uts /bin/sh -c "hostname host-a; exec \"\$@\"" sh \
    mpirun --allow-run-as-root --hostfile "$WORK/hosts" -np 2 --map-by node \
    --mca plm_rsh_agent "$WORK/agent" --mca plm_rsh_no_tree_spawn 1 \
    --mca btl tcp,self --mca btl_tcp_if_include "$NET" --mca oob_tcp_if_include "$NET" \
    "$CONVNET" "${ARGS[@]}" --distributed --out "$WORK/ranks" 2>&1 | tee "$WORK/log"
# Each rank on its own host: the start-up line names them.
grep -q "2 ranks (on host-a, host-b) agree" "$WORK/log"

# The same weights (every tensor's bytes) and the same metrics (timing columns aside).
python3 - "$WORK/alone" "$WORK/ranks" <<'EOF'
import json, struct, sys
def tensors(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    return {k: body[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in header.items() if k != "__metadata__"}
def metrics(folder):
    return [",".join(line.split(",")[:8]) for line in open(folder + "/metrics.csv")]
a, b = (tensors(d + "/last.safetensors") for d in sys.argv[1:])
assert a.keys() == b.keys() and all(a[k] == b[k] for k in a), "the weights differ"
assert metrics(sys.argv[1]) == metrics(sys.argv[2]), "metrics.csv differs"
print(f"two hosts over TCP: the same {len(a)} tensors and metrics as one process")
EOF

if [ "${TWO_HOSTS_BENCH:-0}" = 1 ]; then
    ip netns exec "$NS_A" unshare --uts /bin/sh -c "hostname host-a; exec \"\$@\"" sh \
        mpirun --allow-run-as-root --hostfile "$WORK/hosts" -np 2 --map-by node \
        --mca plm_rsh_agent "$WORK/agent" --mca plm_rsh_no_tree_spawn 1 \
        --mca btl tcp,self --mca btl_tcp_if_include "$NET" --mca oob_tcp_if_include "$NET" \
        "$CONVNET" bench --distributed --config configs/cifar10-seed.toml --threads 1
fi
