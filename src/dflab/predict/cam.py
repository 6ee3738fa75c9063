"""Grad-CAM heat maps of a frame detector's fake logit.

Grad-CAM (R. R. Selvaraju, M. Cogswell, A. Das, R. Vedantam, D. Parikh, D. Batra,
"Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization", ICCV 2017)
weights the feature maps ``A_k`` of a convolution layer by the spatial mean of the gradient of
the explained output with respect to them, ``w_k = mean(d logit / d A_k)``, and keeps the
positive part of ``sum_k w_k A_k``, upsampled to the input: where the evidence for that
output lies. The maps are computed with the ``grad-cam`` package
(https://github.com/jacobgil/pytorch-grad-cam, module ``pytorch_grad_cam``); here the explained
output is the fake logit of a binary real/fake frame network. Temporal networks (that take
whole clips) are not explained.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class CamError(ValueError):
    """A network Grad-CAM cannot explain: no ``Conv2d`` layer, or a temporal (clip) network."""


def last_conv_layer(net: nn.Module) -> nn.Module:
    """The last :class:`torch.nn.Conv2d` of ``net`` in ``net.modules()`` order.

    Raises:
        CamError: ``net`` has no ``Conv2d`` layer.
    """
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise CamError(f"{type(net).__name__} has no Conv2d layer for Grad-CAM to explain")
    return convs[-1]


class _FakeLogit(nn.Module):
    """``net`` with its ``(N,)`` fake logits shaped ``(N, 1)``, the one class Grad-CAM explains."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if out.numel() != len(x):
            raise CamError(f"Grad-CAM expects one fake logit per image, got output {tuple(out.shape)} "
                           f"for {len(x)} images")
        return out.reshape(len(x), 1)


def grad_cam(net: nn.Module, crops: torch.Tensor, layer: nn.Module | None = None) -> np.ndarray:
    """Grad-CAM heat maps of the fake logit of a frame network.

    The network is run in eval mode (batch norm on its running statistics, no dropout); the
    training mode of every module, the ``requires_grad`` flag and ``.grad`` of every parameter
    are restored afterwards, and the hooks Grad-CAM registers on ``layer`` are removed. Works
    under ``torch.no_grad()`` / ``torch.inference_mode()`` too, on the device of ``net``'s
    parameters.

    Args:
        net: maps ``(N, 3, S, S)`` float RGB in ``[0, 1]`` to ``(N,)`` logits (fake positive).
        crops: ``(N, 3, S, S)`` face crops as ``net`` takes them (moved to ``net``'s device
            and parameter dtype).
        layer: the layer whose feature maps are weighted (a module of ``net`` whose output is
            ``(N, C, h, w)``); default :func:`last_conv_layer`.

    Returns:
        ``(N, S, S)`` float32 heat maps in ``[0, 1]`` (each scaled to its own maximum; all
        zeros where no region speaks for "fake").

    Raises:
        CamError: ``net`` takes clips (``takes_clips``), has no ``Conv2d`` layer, or does not
            give one logit per image.
        ValueError: ``crops`` is not ``(N, 3, H, W)``, or ``layer`` is not part of ``net``.
    """
    if getattr(net, "takes_clips", False):
        raise CamError(f"Grad-CAM explains frame networks; {type(net).__name__} is a temporal network "
                       "that scores whole clips")
    if crops.ndim != 4 or crops.shape[1] != 3:
        raise ValueError(f"expected (N, 3, H, W) crops, got {tuple(crops.shape)}")
    if layer is None:
        layer = last_conv_layer(net)
    elif not any(m is layer for m in net.modules()):
        raise ValueError(f"layer {type(layer).__name__} is not a module of {type(net).__name__}")
    if len(crops) == 0:
        return np.zeros((0, *crops.shape[2:]), np.float32)

    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    modes = [(m, m.training) for m in net.modules()]
    params = list(net.parameters())
    saved = [(p, p.requires_grad, p.grad) for p in params]
    ref = params[0] if params else None
    cam = None
    try:
        with torch.inference_mode(False), torch.enable_grad():
            # Gradients flow from the input, not the parameters: nothing accumulates in .grad
            # and frozen networks are explained as well.
            x = crops.detach().clone()
            if ref is not None:
                x = x.to(device=ref.device, dtype=ref.dtype)
            x.requires_grad_(True)
            for p in params:
                p.requires_grad_(False)
            # Not GradCAM's context manager: its __exit__ swallows (and prints) IndexError.
            cam = GradCAM(model=_FakeLogit(net), target_layers=[layer])
            heat = cam(input_tensor=x, targets=[ClassifierOutputTarget(0)] * len(x))
    finally:
        if cam is not None:
            cam.activations_and_grads.release()
        for p, flag, grad in saved:
            p.requires_grad_(flag)
            p.grad = grad
        for m, training in modes:
            m.training = training
    return np.clip(np.nan_to_num(np.asarray(heat, np.float32)), 0.0, 1.0)
