"""What the TFLite and TF.js graph executors (``tflite_graph``, ``tfjs_graph``) share: TF's SAME
padding, the fused activations and the NCHW convolution step.

Both runtimes follow TensorFlow's conventions here: SAME padding puts the odd extra pixel after
(bottom/right), and a fused activation is applied in place to the op's fresh output.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TF SAME padding (before, after) of one axis: the odd extra pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def activate(x: torch.Tensor, act: str) -> torch.Tensor:
    """Fused activation, in place: x is always the fresh output of the op it is fused into.
    ``act``: relu, relu6, relu_n1_to_1, tanh; anything else (``"none"``) returns x."""
    if act == "relu":
        return F.relu(x, inplace=True)
    if act == "relu6":
        return F.hardtanh(x, 0.0, 6.0, inplace=True)
    if act == "relu_n1_to_1":
        return F.hardtanh(x, -1.0, 1.0, inplace=True)
    if act == "tanh":
        return torch.tanh_(x)
    return x


class ConvBody:
    """Conv2D / depthwise conv on NCHW (weights OIHW), mixed into an executor's conv step ahead of
    its ``Step`` base (an ``nn.Module``); the step's ``__init__`` calls ``set_conv`` after
    ``super().__init__``. ``pads`` = (top, bottom, left, right): symmetric pads go to
    ``F.conv2d``, asymmetric SAME pads (odd pixel after) to an ``F.pad`` first."""

    def set_conv(self, weight, bias, stride, dilation, pads, groups, act: str) -> None:
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.stride, self.dilation, self.groups, self.act = stride, dilation, groups, act
        top, bottom, left, right = pads
        if top == bottom and left == right:
            self.pre_pad, self.padding = None, (top, left)
        else:
            self.pre_pad, self.padding = (left, right, top, bottom), (0, 0)

    def forward(self, x):
        if self.pre_pad is not None:
            x = F.pad(x, self.pre_pad)
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                     self.groups)
        return activate(y, self.act)
