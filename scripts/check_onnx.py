"""Checks convnet's ONNX exports with the ONNX project's own tools: every model in DIR passes
onnx.checker.check_model (full check, with shape inference), and onnxruntime's logits on the
recorded input match convnet's within 1e-4 relative (max |a - b| / max |b|).

    CONVNET_ONNX_DUMP=/tmp/onnx-dump cargo test --test onnx_export
    python scripts/check_onnx.py /tmp/onnx-dump

DIR holds <name>.onnx and <name>.json ({"input_shape", "input", "logits_shape", "logits"}),
written by tests/onnx_export.rs. Exits 1 if any model fails.
"""
import json
import pathlib
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main(folder):
    models = sorted(pathlib.Path(folder).glob("*.onnx"))
    if not models:
        print(f"no .onnx files in {folder}")
        return 1
    failed = 0
    for path in models:
        record = json.loads(path.with_suffix(".json").read_text())
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        x = np.array(record["input"], dtype=np.float32).reshape(record["input_shape"])
        expected = np.array(record["logits"], dtype=np.float32).reshape(record["logits_shape"])
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (got,) = sess.run(["logits"], {"input": x})
        rel = float(np.abs(got - expected).max() / max(np.abs(expected).max(), 1e-6))
        ok = rel <= 1e-4
        failed += not ok
        print(f"{path.name}: checker ok, onnxruntime {ort.__version__} vs convnet: max relative difference {rel:.2e} {'ok' if ok else 'FAIL'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
