"""Checks convnet's PyTorch exports in PyTorch itself: for every <name>/ folder in DIR (model.py
and model.safetensors, written by `convnet export --format pytorch`) and its <name>.json (the
input and convnet's logits, written by tests/pytorch_export.rs), `Net().load_state_dict(...)`
must load with strict=True and give convnet's logits within 1e-4 relative.

    CONVNET_PYTORCH_DUMP=/tmp/pt-dump cargo test --test pytorch_export
    python scripts/check_pytorch.py /tmp/pt-dump

Exits 1 if any model fails.
"""
import importlib.util
import json
import pathlib
import sys

import torch
from safetensors.torch import load_file


def load_net(folder):
    spec = importlib.util.spec_from_file_location(f"convnet_export_{folder.name}", folder / "model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    net = module.Net().eval()
    net.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    return net


def main(root):
    folders = sorted(p for p in pathlib.Path(root).iterdir() if p.is_dir())
    if not folders:
        print(f"no exported models in {root}")
        return 1
    failed = 0
    torch.set_num_threads(1)
    for folder in folders:
        record = json.loads((folder.parent / (folder.name + ".json")).read_text())
        x = torch.tensor(record["input"], dtype=torch.float32).reshape(record["input_shape"])
        expected = torch.tensor(record["logits"], dtype=torch.float32).reshape(record["logits_shape"])
        with torch.no_grad():
            got = load_net(folder)(x)
        rel = float((got - expected).abs().max() / expected.abs().max().clamp(min=1e-6))
        classes_ok = sys.modules[f"convnet_export_{folder.name}"].CLASSES == record["classes"]
        ok = rel <= 1e-4 and classes_ok
        failed += not ok
        print(f"{folder.name}: torch {torch.__version__} vs convnet: max relative difference {rel:.2e}, class names {'ok' if classes_ok else 'differ'}: {'ok' if ok else 'FAIL'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
