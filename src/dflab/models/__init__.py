"""Detector networks: dflab's own (MesoNet) and any timm backbone, behind one factory.

``registry`` (names, no imports) <- ``frame``, ``mesonet`` <- ``temporal``, ``embedding``
<- ``factory`` (:func:`create_model`) <- ``checkpoint`` (:func:`load_checkpoint`).
"""

from dflab.models.factory import create_model, default_image_size
from dflab.models.frame import FrameClassifier
from dflab.models.registry import list_models, register_model

__all__ = ["FrameClassifier", "create_model", "default_image_size", "list_models", "register_model"]
