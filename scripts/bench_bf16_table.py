#!/usr/bin/env python3
"""The table of a `scripts/bench_bf16_sitting.sh` sitting: per workload and side the median
images/s over the rounds (each round's own figure is the median of its samples), convnet bf16
over PyTorch bf16 from those medians, and each round's own ratio (the two sides measured
minutes apart, not across the whole sitting).

Usage: scripts/bench_bf16_table.py SITTING.jsonl
"""
import json
import statistics
import sys


def main(path):
    runs = {}
    for line in open(path):
        record = json.loads(line)
        if "side" not in record:
            continue
        name = (record.get("config") or record.get("bench")).split("/")[-1].removesuffix(".toml").removeprefix("cifar10-")
        key = (name, record["mode"])
        runs.setdefault(key, {}).setdefault(record["side"], {})[record.get("round", 1)] = record["img_per_s_median"]
    sides = ["convnet-f32", "convnet-bf16", "torch-f32", "torch-bf16"]
    print("| workload | " + " | ".join(sides) + " | bf16 / PyTorch bf16 | each round |")
    print("|---|" + "---:|" * (len(sides) + 2))
    for (name, mode), by_side in runs.items():
        medians = {side: statistics.median(by_side[side].values()) for side in sides if side in by_side}
        rounds = sorted(set(by_side.get("convnet-bf16", {})) & set(by_side.get("torch-bf16", {})))
        each = [by_side["convnet-bf16"][r] / by_side["torch-bf16"][r] for r in rounds]
        both = "convnet-bf16" in medians and "torch-bf16" in medians
        ratio = f"{medians['convnet-bf16'] / medians['torch-bf16']:.2f}x" if both else "-"
        cells = " | ".join(f"{medians[side]:,.0f}" if side in medians else "-" for side in sides)
        print(f"| {name} {mode} | {cells} | {ratio} | {', '.join(f'{r:.2f}' for r in each)} |")


if __name__ == "__main__":
    main(sys.argv[1])
