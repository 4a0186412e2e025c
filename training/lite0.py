"""EfficientNet-Lite0 as a flat Keras 3 functional graph.

Lite0 is EfficientNet-B0 with the changes made for mobile/edge accelerators:
no squeeze-and-excitation, ReLU6 instead of swish, and a stem (32 channels) and head
(1280 channels) that are not scaled. Depth/width multipliers are 1.0, so the block
layout is B0's.

The layers are added to the caller's graph (no nested ``Model``) so that Grad-CAM and
partial freezing can address any layer by name. Convolutions with stride 2 use explicit
TensorFlow-style "SAME" padding (extra pixel at the bottom/right when the total padding
is odd), which is what the ported ImageNet weights were trained with; computing it from
the static shape keeps the result identical on every Keras backend.
"""

from __future__ import annotations

import math

import keras
from keras import layers

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
FEATURE_LAYER = "top_activation"  # last conv feature map; used by Grad-CAM

# (expand_ratio, kernel, stride, in_channels, out_channels, repeats)
BLOCKS_ARGS: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)


def block_names() -> list[str]:
    """Names of the 16 MBConv blocks in order, e.g. ``block1a`` ... ``block7a``."""
    names = []
    for stage, args in enumerate(BLOCKS_ARGS, start=1):
        for r in range(args[5]):
            names.append(f"block{stage}{chr(ord('a') + r)}")
    return names


def _same_padding(size: tuple[int, int], kernel: int, stride: int) -> tuple[tuple[int, int], tuple[int, int]]:
    pads = []
    for dim in size:
        out = math.ceil(dim / stride)
        total = max((out - 1) * stride + kernel - dim, 0)
        pads.append((total // 2, total - total // 2))
    return pads[0], pads[1]


def _conv(x, filters: int, kernel: int, stride: int, name: str, depthwise: bool = False):
    if stride == 1:
        padding = "same"
    else:
        h, w = x.shape[1], x.shape[2]
        if h is None or w is None:
            raise ValueError("EfficientNet-Lite0 builder needs a static input height/width")
        x = layers.ZeroPadding2D(_same_padding((h, w), kernel, stride), name=f"{name}_pad")(x)
        padding = "valid"
    if depthwise:
        return layers.DepthwiseConv2D(kernel, strides=stride, padding=padding, use_bias=False, name=name)(x)
    return layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=False, name=name)(x)


def _bn(x, name: str):
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)(x)


def _relu6(x, name: str):
    return layers.ReLU(max_value=6.0, name=name)(x)


def _mbconv(x, expand: int, kernel: int, stride: int, in_ch: int, out_ch: int, name: str):
    inputs = x
    if expand != 1:
        x = layers.Conv2D(in_ch * expand, 1, padding="same", use_bias=False, name=f"{name}_expand_conv")(x)
        x = _bn(x, f"{name}_expand_bn")
        x = _relu6(x, f"{name}_expand_activation")
    x = _conv(x, 0, kernel, stride, f"{name}_dwconv", depthwise=True)
    x = _bn(x, f"{name}_bn")
    x = _relu6(x, f"{name}_activation")
    x = layers.Conv2D(out_ch, 1, padding="same", use_bias=False, name=f"{name}_project_conv")(x)
    x = _bn(x, f"{name}_project_bn")
    if stride == 1 and in_ch == out_ch:
        x = layers.Add(name=f"{name}_add")([x, inputs])
    return x


def normalize(x):
    """EfficientNet-Lite input normalisation: [0, 255] RGB -> (x - 127) / 128."""
    return layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="lite0_normalize")(x)


def lite0_features(x):
    """Add the Lite0 backbone to ``x`` (normalised input) and return the last feature map."""
    x = _conv(x, STEM_CHANNELS, 3, 2, "stem_conv")
    x = _bn(x, "stem_bn")
    x = _relu6(x, "stem_activation")
    names = iter(block_names())
    for expand, kernel, stride, in_ch, out_ch, repeats in BLOCKS_ARGS:
        for r in range(repeats):
            x = _mbconv(
                x,
                expand,
                kernel,
                stride if r == 0 else 1,
                in_ch if r == 0 else out_ch,
                out_ch,
                next(names),
            )
    x = layers.Conv2D(HEAD_CHANNELS, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = _bn(x, "top_bn")
    return _relu6(x, FEATURE_LAYER)


def build_backbone(input_shape: tuple[int, int, int]) -> keras.Model:
    """Raw-pixel ([0, 255] float) input -> pooled 1280-d features. Used for the weight port."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = normalize(inputs)
    x = lite0_features(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, x, name="efficientnet_lite0_backbone")


def backbone_layer_names(model: keras.Model) -> list[str]:
    """Names of the layers of ``model`` that carry backbone weights."""
    return [
        layer.name
        for layer in model.layers
        if layer.weights and (layer.name.startswith(("stem_", "block", "top_conv", "top_bn")))
    ]
