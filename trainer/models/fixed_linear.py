"""A linear layer over a fixed input matrix (raw item features), with a faster weight gradient.

Every training step projects all items' raw features (F1 / D1: ``X = F W^T + b``, F of shape
[n_items, 4096] on the Baby shape), and the weight gradient ``G^T F`` is one of the step's two
largest GEMMs. Torch computes it on F's transposed view; the same product from a contiguous
copy of F^T, made once, took 44 ms instead of 64 ms at d 128 on the 2-core CPU (7,050 x 4,096
x 128), and a step of the default model 101 ms instead of 117 ms (both ad hoc; the epochs side
by side: bench/results/train_speed_vs_baseline_default.md). DRAGON's wider first layer (256)
gained nothing, so only FREEDOM uses it. The copy doubles the feature's memory, so it is only
kept up to ``MAX_TRANSPOSE_BYTES``.
"""

from __future__ import annotations

import torch
from torch import nn

MAX_TRANSPOSE_BYTES = 1 << 30  # past 1 GiB of F^T the plain (slower) gradient is used


class _FixedInputLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, x_t, weight, bias):  # type: ignore[override]
        ctx.save_for_backward(x_t)
        return torch.addmm(bias, x, weight.t())

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (x_t,) = ctx.saved_tensors
        grad_w = (x_t @ grad).t() if ctx.needs_input_grad[2] else None
        grad_b = grad.sum(0) if ctx.needs_input_grad[3] else None
        return None, None, grad_w, grad_b


class FixedInputProjection:
    """``lin(x)`` where ``x`` never requires grad, with x^T kept for the layer's latest input.

    Anything else (an input that requires grad, as SEA's transformed features do; no grad
    mode; a frozen layer; an input too large to copy) goes through ``lin`` unchanged.
    """

    def __init__(self) -> None:
        self._held: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id(lin) -> (x, x^T)

    def __call__(self, lin: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        if (
            x.requires_grad
            or not torch.is_grad_enabled()
            or not lin.weight.requires_grad
            or lin.bias is None
            or x.dim() != 2
            or x.numel() * x.element_size() > MAX_TRANSPOSE_BYTES
        ):
            return lin(x)
        held = self._held.get(id(lin))
        if held is None or held[0] is not x:  # a new input (moved, replaced): copy it once
            held = (x, x.t().contiguous())
            self._held[id(lin)] = held
        return _FixedInputLinear.apply(x, held[1], lin.weight, lin.bias)
