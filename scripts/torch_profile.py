#!/usr/bin/env python3
"""PyTorch's own profiler over ../shared/bench/torch_config_bench.py (the same model and the same
step as that benchmark): CPU time per aten operation, for the per-layer comparison in
docs/performance.md. The table covers every step run (warm-up included): divide by the steps
printed at the end for a per-step figure.
Usage: /tmp/torch-venv/bin/python scripts/torch_profile.py --config configs/cifar10-resnet.toml --mode train --batch 128 --channels-last
"""
import os, runpy, sys
from torch.profiler import ProfilerActivity, profile

script = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "bench", "torch_config_bench.py")
warmup, steps = 5, 20
sys.argv = [script] + sys.argv[1:] + ["--reps", "1", "--steps", str(steps), "--warmup", str(warmup)]
with profile(activities=[ProfilerActivity.CPU]) as prof:
    runpy.run_path(script, run_name="__main__")
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
print(f"steps profiled: {warmup + steps}")
