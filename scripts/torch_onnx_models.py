"""PyTorch models exported to ONNX the way PyTorch users do it, for convnet's importer:
`torch.onnx.export` with the TorchScript exporter (dynamo=False) and, where onnxscript is
installed, the torch.export-based one (dynamo=True, the default since PyTorch 2.9). Writes
DIR/<name>.onnx and DIR/<name>.json ({"input_shape", "input", "logits"}: the input, NCHW in
[0, 1], and PyTorch's logits); tests/onnx_import.rs (the ignored test
`pytorch_exports_import_and_give_pytorchs_logits`) imports each and compares.

    python scripts/torch_onnx_models.py /tmp/torch-onnx
    CONVNET_TORCH_ONNX_DIR=/tmp/torch-onnx cargo test --test onnx_import -- --ignored
"""
import importlib.util
import json
import pathlib
import sys

import torch
import torch.nn as nn


class SmallCnn(nn.Module):
    """A Fashion-MNIST CNN as a PyTorch user writes it: padding=1 convs, batch norm, pools."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16 * 7 * 7, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


class Block(nn.Module):
    """A ResNet basic block with a strided 1x1 projection."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride) if stride != 1 or cin != cout else None

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return y + (x if self.shortcut is None else self.shortcut(x))


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.blocks = nn.Sequential(Block(8, 8, 1), nn.ReLU(), Block(8, 16, 2), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


class GeluNet(nn.Module):
    """GELU (exact) after batch norm and a classifier without bias, as the fast CIFAR-10 recipe
    writes them: the TorchScript exporter spells GELU out (Div, Erf, Add, Mul, Mul), the
    dynamo one may write a Gelu node."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.GELU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 8, 3, padding=1), nn.GELU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10, bias=False),
        )

    def forward(self, x):
        return self.net(x)


def randomize_batch_norm(net):
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)


def main(out):
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    exporters = [False] + ([True] if importlib.util.find_spec("onnxscript") else [])
    for name, net, shape in [("small_cnn", SmallCnn(), (2, 1, 28, 28)), ("tiny_resnet", TinyResNet(), (2, 3, 32, 32)),
                             ("gelu_net", GeluNet(), (2, 3, 16, 16))]:
        randomize_batch_norm(net)
        net.eval()
        x = torch.rand(shape)
        with torch.no_grad():
            logits = net(x)
        for dynamo in exporters:
            tag = f"{name}_{'dynamo' if dynamo else 'torchscript'}"
            path = out / f"{tag}.onnx"
            kwargs = {"dynamic_shapes": ({0: torch.export.Dim("batch")},)} if dynamo else {"dynamic_axes": {"input": {0: "N"}}}
            torch.onnx.export(net, (x,), str(path), input_names=["input"], output_names=["logits"], opset_version=17, dynamo=dynamo, **kwargs)
            record = {"input_shape": list(shape), "input": x.flatten().tolist(), "logits": logits.flatten().tolist()}
            (out / f"{tag}.json").write_text(json.dumps(record))
            print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1])
