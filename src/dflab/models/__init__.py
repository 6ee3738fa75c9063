"""Detector networks: dflab's own (MesoNet) and any timm backbone, behind one factory."""

from dflab.models.registry import (
    FrameClassifier,
    create_model,
    default_image_size,
    list_models,
    register_model,
)

__all__ = ["FrameClassifier", "create_model", "default_image_size", "list_models", "register_model"]
