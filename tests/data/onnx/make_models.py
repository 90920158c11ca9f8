"""Builds the ONNX models of tests/onnx_import.rs with the `onnx` package's helpers, and records
the outputs onnxruntime gives for a fixed input, so that the Rust test can check that the
imported checkpoint computes the same. Run from the repository root:

    python -m venv /tmp/onnx-venv && /tmp/onnx-venv/bin/pip install onnx onnxruntime numpy
    /tmp/onnx-venv/bin/python tests/data/onnx/make_models.py

Writes tests/data/onnx/<name>.onnx and <name>.json ({"input_shape", "output_shape", "output"}).
The input: pixel value (37 * i + 11) % 256 at flat index i of the graph's input (in its own
layout, NCHW or NHWC), divided by 255.
"""
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(17)


def const(name, shape, low=-0.5, high=0.5):
    return numpy_helper.from_array(rng.uniform(low, high, shape).astype(np.float32), name)


def pixels(shape):
    n = int(np.prod(shape))
    return ((37 * np.arange(n) + 11) % 256).reshape(shape).astype(np.float32) / 255.0


def save(name, graph, input_shape):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="onnx-helper")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = os.path.join(HERE, name + ".onnx")
    onnx.save(model, path)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    out = sess.run(None, {graph.input[0].name: pixels(input_shape)})[0]
    with open(os.path.join(HERE, name + ".json"), "w") as f:
        json.dump({"input_shape": list(input_shape), "output_shape": list(out.shape), "output": [float(v) for v in out.ravel()]}, f)
    print(f"{path}: output {out.shape}")


def torch_style():
    """NCHW, as torch.onnx.export writes a small ResNet-like CNN: normalisation, Conv + Relu,
    MaxPool, BatchNormalization, a strided Conv with asymmetric pads, a residual block, Flatten,
    Gemm (transB) with its bias from a Constant node, Relu, MatMul + Add."""
    init = [
        const("mean", [1, 3, 1, 1], 0.3, 0.6), const("std", [1, 3, 1, 1], 0.2, 0.3),
        const("c1.w", [4, 3, 3, 3]), const("c1.b", [4]),
        const("bn.scale", [4], 0.5, 1.5), const("bn.bias", [4]), const("bn.mean", [4]), const("bn.var", [4], 0.5, 1.5),
        const("c2.w", [5, 4, 3, 3]), const("c2.b", [5]),
        const("r1.w", [5, 5, 3, 3]), const("r1.b", [5]),
        const("r2.w", [5, 5, 3, 3]), const("r2.b", [5]),
        const("fc1.w", [6, 5 * 2 * 2]),
        const("fc2.w", [6, 3]), const("fc2.b", [3]),
    ]
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["n1"], name="norm_sub"),
        helper.make_node("Div", ["n1", "std"], ["n2"], name="norm_div"),
        helper.make_node("Conv", ["n2", "c1.w", "c1.b"], ["a1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("Relu", ["a1"], ["a2"], name="relu1"),
        helper.make_node("MaxPool", ["a2"], ["a3"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["a3", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["a4"], name="bn1", epsilon=1e-3),
        helper.make_node("Conv", ["a4", "c2.w", "c2.b"], ["a5"], name="conv2", kernel_shape=[3, 3], pads=[0, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Conv", ["a5", "r1.w", "r1.b"], ["r1"], name="res_conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["r1"], ["r2"], name="res_relu"),
        helper.make_node("Conv", ["r2", "r2.w", "r2.b"], ["r3"], name="res_conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["r3", "a5"], ["a6"], name="res_add"),
        helper.make_node("Flatten", ["a6"], ["f"], name="flatten", axis=1),
        helper.make_node("Constant", [], ["fc1.b"], name="fc1_bias", value=const("fc1.b.value", [6])),
        helper.make_node("Gemm", ["f", "fc1.w", "fc1.b"], ["h1"], name="fc1", transB=1),
        helper.make_node("Relu", ["h1"], ["h2"], name="relu2"),
        helper.make_node("MatMul", ["h2", "fc2.w"], ["h3"], name="fc2"),
        helper.make_node("Add", ["h3", "fc2.b"], ["logits"], name="fc2_bias"),
    ]
    graph = helper.make_graph(
        nodes, "torch_style",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 9, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        init,
    )
    save("torch_style", graph, [2, 3, 9, 8])


def keras_style():
    """NHWC input with a Transpose first (as tf2onnx writes), a scale by a scalar, SAME_UPPER
    auto padding, LRN, AveragePool, a projection shortcut, GlobalAveragePool, Reshape to
    [N, -1], Gemm without transB, and a Softmax at the end."""
    init = [
        numpy_helper.from_array(np.array(4.0, dtype=np.float32), "scale"),
        const("c1.w", [4, 1, 3, 3]), const("c1.b", [4]),
        const("b1.w", [6, 4, 3, 3]), const("b1.b", [6]),
        const("sc.w", [6, 4, 1, 1]), const("sc.b", [6]),
        numpy_helper.from_array(np.array([0, -1], dtype=np.int64), "shape"),
        const("fc.w", [6, 5]), const("fc.b", [5]),
    ]
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], name="to_nchw", perm=[0, 3, 1, 2]),
        helper.make_node("Mul", ["t", "scale"], ["s"], name="scale"),
        helper.make_node("Conv", ["s", "c1.w", "c1.b"], ["a1"], name="conv1", kernel_shape=[3, 3], auto_pad="SAME_UPPER"),
        helper.make_node("Tanh", ["a1"], ["a2"], name="tanh"),
        helper.make_node("LRN", ["a2"], ["a3"], name="lrn", size=3, alpha=0.3, beta=0.75, bias=2.0),
        helper.make_node("AveragePool", ["a3"], ["a4"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["a4", "b1.w", "b1.b"], ["b1"], name="block_conv", kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1]),
        helper.make_node("Sigmoid", ["b1"], ["b2"], name="block_sigmoid"),
        helper.make_node("Conv", ["a4", "sc.w", "sc.b"], ["sc"], name="shortcut", kernel_shape=[1, 1], strides=[2, 2]),
        helper.make_node("Add", ["b2", "sc"], ["a5"], name="block_add"),
        helper.make_node("GlobalAveragePool", ["a5"], ["g"], name="gap"),
        helper.make_node("Reshape", ["g", "shape"], ["f"], name="reshape"),
        helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["z"], name="fc"),
        helper.make_node("Softmax", ["z"], ["probs"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "keras_style",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 8, 1])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 5])],
        init,
    )
    save("keras_style", graph, [2, 8, 8, 1])


if __name__ == "__main__":
    torch_style()
    keras_style()
