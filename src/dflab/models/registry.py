"""The registry of dflab's own networks (:func:`register_model`); it imports nothing of dflab.

Any other backbone name is looked up in timm by :func:`dflab.models.factory.create_model`.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

ModelFn = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelFn] = {}
_INPUT_SIZE: dict[str, int] = {}


def register_model(name: str, input_size: int = 256) -> Callable[[ModelFn], ModelFn]:
    """Decorator registering a function that builds a backbone returning ``(B, 1)`` logits.

    Args:
        name: registry name.
        input_size: the input side the model was designed for (``data.image_size: null``).
    """

    def wrap(fn: ModelFn) -> ModelFn:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        _INPUT_SIZE[name] = input_size
        return fn

    return wrap


def list_models() -> list[str]:
    """Names of dflab's own models (any timm model name works too)."""
    return sorted(_REGISTRY)


def builder(name: str) -> ModelFn | None:
    """The registered builder of ``name``, or ``None`` (then it is a timm name or unknown)."""
    return _REGISTRY.get(name)


def registered_input_size(name: str) -> int | None:
    """The input side ``name`` was registered with, or ``None``."""
    return _INPUT_SIZE.get(name)
