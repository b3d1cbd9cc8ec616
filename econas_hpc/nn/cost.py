"""Model cost figures: parameter counts, multiply-accumulates and the pre-pool feature size.

Owns the counting conventions (DARTS): parameters exclude the auxiliary head unless asked;
MACs count only convolutions and linear layers, per image, in eval mode (so the auxiliary
head, which runs only in training, is never counted). BatchNorm, ReLU, pooling, the zero op
and the additions of node inputs are free. With this convention DARTS_V2 at C=36 / 32 px
gives ~528 M MACs (spec 4.2), and on ImageNet (C=48, 224 px, 14 cells) 529.9 M, where the
DARTS paper reports 574 M from a counting it never published. `count_elementwise_ops` gives the
extra a count adding BN, ReLU and pooling would add (+14.7 M there, 544.6 M in all), to show
that no common convention reaches 574 M. It does not build or train networks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["count_elementwise_ops", "count_macs", "count_params", "feature_size"]

_AUX_NAME = "auxiliary_head"


def count_params(model: nn.Module, include_aux: bool = False) -> int:
    """Number of parameters; the auxiliary head is excluded by default (DARTS convention).

    Matching by the `auxiliary_head` name component keeps this correct for wrapped models
    (DDP's `module.`, torch.compile's `_orig_mod.`).
    """
    return sum(
        p.numel()
        for name, p in model.named_parameters()
        if include_aux or _AUX_NAME not in name.split(".")
    )


def _dummy_forward(model: nn.Module, resolution: int, hooks: list[Callable[[], None]]) -> None:
    """Run one 1-image eval-mode forward on the model's device, then restore mode, drop hooks."""
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = torch.zeros(1, 3, resolution, resolution, dtype=param.dtype, device=param.device)
            model(x)
    finally:
        for remove in hooks:
            remove()
        model.train(was_training)


def count_macs(model: nn.Module, resolution: int) -> int:
    """Multiply-accumulates per image of every conv and linear layer (eval mode).

    A conv costs output elements x (C_in / groups) x kh x kw; a linear costs in x out.
    """
    total = 0

    def conv_hook(module: nn.Module, _inp: object, out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.Conv2d)
        kh, kw = module.kernel_size
        total += out.numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Module, _inp: object, out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.Linear)
        total += out.numel() * module.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    _dummy_forward(model, resolution, [h.remove for h in handles])
    return total


def count_elementwise_ops(model: nn.Module, resolution: int) -> int:
    """Per-image operations `count_macs` leaves out, as common op counters count them.

    BatchNorm: 2 per output element (scale and shift); ReLU: 1 per output element; max/average
    pooling (adaptive included): 1 per input element. Node additions and the zero op stay free.
    """
    total = 0

    def hook(module: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.BatchNorm2d):
            total += 2 * out.numel()
        elif isinstance(module, nn.ReLU):
            total += out.numel()
        else:
            total += inp[0].numel()

    kinds = (nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    _dummy_forward(model, resolution, [h.remove for h in handles])
    return total


def feature_size(model: nn.Module, resolution: int) -> int:
    """Spatial size (height) of the feature map entering the model's `global_pooling`."""
    sizes: list[int] = []

    def pre_hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        sizes.append(int(args[0].shape[-2]))

    pool = model.get_submodule("global_pooling")
    handle = pool.register_forward_pre_hook(pre_hook)
    _dummy_forward(model, resolution, [handle.remove])
    return sizes[-1]
