"""convnet for Python: the CNN tutorial's NumPy functions at engine speed, and convnet's models
and training.

    import numpy as np
    import convnet as cn

    Z, cache = cn.conv_forward(A_prev, W, b, {"stride": 1, "pad": 2})
    dA_prev, dW, db = cn.conv_backward(dZ, cache)
    model = cn.Model.load("runs/fashion-mnist/best.safetensors")
    probabilities = model.predict(images)        # uint8 (m, 28, 28, 1) -> (m, 10)

The number of threads is the machine's CPUs; set RAYON_NUM_THREADS before the first call to
use fewer. docs/python.md has the whole API, docs/tutorial.md the tutorial as scripts.
"""

from . import _convnet, functions, models
from .functions import (
    conv_backward,
    conv_forward,
    conv_single_step,
    create_mask_from_window,
    distribute_value,
    lrn,
    lrn_backward,
    pool_backward,
    pool_forward,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    softmax,
    softmax_cross_entropy,
    softmax_cross_entropy_backward,
    zero_pad,
)
from .models import DEFAULT_DATA, Model, import_onnx, load_dataset, read_image, save_grid, train

__version__ = _convnet.__version__

__all__ = functions.__all__ + models.__all__
