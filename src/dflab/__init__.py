"""dflab: an experiment framework for deepfake-video detection on PyTorch Lightning."""

__version__ = "0.1.0"
