#!/usr/bin/env python3
"""Mutation testing of the Python package's Rust (python/src), whose tests are pytest's.

cargo-mutants runs cargo's test harness, which cannot load a Python extension module, so this
script takes cargo-mutants' list of mutants (with their diffs) and, for a sample of them, applies
the diff, builds the wheel with maturin, installs it in a virtual environment and runs
`pytest -x` on python/tests: a mutant whose build fails is unviable, one that makes a test fail
is caught, one that passes every test is missed. Run it in a separate git worktree (it edits
python/src in place and restores it after each mutant):

    git worktree add /tmp/pmwt HEAD --detach && cd /tmp/pmwt
    python3 scripts/mutants_python.py --venv /tmp/pyvenv --sample 24 [--seed 1] [--filter REGEX] [--test-timeout 180]

The venv needs maturin and pytest; its convnet is replaced by each mutant's, then by the
unmutated build at the end. Mutants that replace a whole PyO3 function or registration with a
constant (PyResult::new(), Bound::from(...)) are left out: they do not compile.
"""

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

UNVIABLE = re.compile(r"PyResult::new|from_iter|PyResult::from\(|Bound::from|Bound::new|Py::from|Default::default|leak")


def run(cmd, cwd, timeout=900):
    """The command's result; None when it ran past `timeout` seconds (and was killed)."""
    try:
        return subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def build_and_install(root: Path, venv: Path, wheels: Path) -> subprocess.CompletedProcess:
    for w in wheels.glob("*.whl"):
        w.unlink()
    built = run([str(venv / "bin" / "maturin"), "build", "--release", "--out", str(wheels)], root / "python")
    if built is None or built.returncode != 0:
        return built
    wheel = next(wheels.glob("*.whl"))
    return run([str(venv / "bin" / "pip"), "install", "--quiet", "--force-reinstall", "--no-deps", str(wheel)], root)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--venv", type=Path, required=True)
    p.add_argument("--sample", type=int, default=24)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--filter", default="", help="only mutants whose name matches this regex")
    p.add_argument("--test-timeout", type=int, default=180, help="seconds for pytest; a mutant that runs past it counts as caught (timeout)")
    args = p.parse_args()
    root = Path.cwd()
    listed = run(["cargo", "mutants", "--list", "--diff", "--json", "--package", "convnet-python"], root)
    listed_all = [m for m in json.loads(listed.stdout) if m["file"].startswith("python/src/")]
    mutants = [m for m in listed_all if not UNVIABLE.search(m["name"]) and re.search(args.filter, m["name"])]
    print(f"{len(listed_all)} mutants of python/src, {len(listed_all) - len(mutants)} left out by name or --filter", flush=True)
    random.Random(args.seed).shuffle(mutants)
    sample = mutants[: args.sample]
    print(f"{len(mutants)} candidate mutants, testing {len(sample)}", flush=True)
    wheels = Path(tempfile.mkdtemp())
    results = {"caught": [], "timeout": [], "missed": [], "unviable": []}
    try:
        for i, m in enumerate(sample, 1):
            path = root / m["file"]
            original = path.read_text()
            start = time.time()
            try:
                patched = subprocess.run(["patch", "--quiet", str(path)], input=m["diff"], text=True, capture_output=True)
                if patched.returncode != 0:
                    sys.exit(f"cannot apply {m['name']}: {patched.stdout}{patched.stderr}")
                built = build_and_install(root, args.venv, wheels)
                if built is None or built.returncode != 0:
                    outcome = "unviable"
                else:
                    tests = run([str(args.venv / "bin" / "pytest"), "-x", "-q", "python/tests"], root, args.test_timeout)
                    outcome = "timeout" if tests is None else "missed" if tests.returncode == 0 else "caught"
            finally:
                path.write_text(original)
            results[outcome].append(m["name"])
            print(f"[{i}/{len(sample)}] {outcome:8} {time.time() - start:5.0f} s  {m['name']}", flush=True)
    finally:
        build_and_install(root, args.venv, wheels)
        shutil.rmtree(wheels, ignore_errors=True)
    held = len(results["caught"]) + len(results["timeout"])
    viable = held + len(results["missed"])
    print(f"\n{len(results['caught'])} caught, {len(results['timeout'])} timeouts, {len(results['missed'])} missed, "
          f"{len(results['unviable'])} unviable ({held}/{viable} of the viable caught or timed out)")
    for name in results["missed"]:
        print(f"missed: {name}")


if __name__ == "__main__":
    main()
