#!/usr/bin/env bash
# Mutation testing (docs/testing.md): cargo-mutants on one folder of src/ with the test targets
# that exercise it, or on the change in the working tree (`diff`) with every test.
# Needs: cargo install cargo-mutants --locked
# Usage: scripts/mutants.sh ops|layers|optim|data|train|diff [more cargo-mutants arguments]
#   e.g. scripts/mutants.sh layers              # every mutant of src/layers
#        scripts/mutants.sh ops --shard 1/8     # a round-robin eighth of src/ops's mutants
#        scripts/mutants.sh diff                # the mutants of `git diff main` (run before a commit)
# Results: mutants.out-<what>/ (caught.txt, missed.txt, timeout.txt, unviable.txt).
# The "mutants" cargo profile (Cargo.toml) builds without debug info; each mutant rebuilds the
# crate and links only the listed test targets (about 10-25 s a mutant on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:?usage: scripts/mutants.sh ops|layers|optim|data|train|diff [cargo-mutants arguments]}
shift
case "$what" in
  ops) tests="--lib ops_conv ops_pool ops_other ops_known_answers simd_levels modern layers features" ;;
  layers) tests="modern ops_conv ops_pool ops_other layers train_loop param_names features init cli viz" ;;
  optim) tests="--lib optim train_loop features reliability checkpoint_compat" ;;
  data) tests="--lib data_readers modern features reliability fuzz_regressions cli_commands" ;;
  train) tests="--lib train_loop reliability checkpoint_compat crash_safety features cli cli_commands" ;;
  diff) tests="" ;;
  *) echo "unknown folder: $what" >&2; exit 2 ;;
esac
args=(--profile mutants --timeout 120 --output "mutants.out-$what")
if [ "$what" = diff ]; then
  git diff main > "/tmp/convnet-mutants.diff"
  args+=(--in-diff /tmp/convnet-mutants.diff)
else
  args+=(--file "src/$what/*.rs")
fi
for t in $tests; do
  if [ "$t" = --lib ]; then args+=(-C --lib); else args+=(-C "--test=$t"); fi
done
exec cargo mutants "${args[@]}" "$@"
