"""How a trained detector reads a file: its face detector, crop geometry, clip sampling and how
track scores combine — recorded with the model at export, so scoring a new file cuts exactly the
crops the model was evaluated on."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

#: settings that decide which pixels a model sees; ensemble members must agree on all of them
CROP_KEYS = ("image_size", "frames_per_clip", "frame_stride", "margin", "crop", "detector",
             "detector_options", "detection_frames", "frame_step")


@dataclass(frozen=True)
class PredictSettings:
    """What scoring needs besides the network.

    Attributes:
        image_size: side of the square face crop in pixels.
        frames_per_clip: frames in one clip (1 for frame models); ``frame_stride`` between them.
        clips_per_track: clips scored per face track (``data.eval_clips_per_video``).
        margin: crop side relative to the face size (``faces.margin``).
        crop: ``box`` or ``aligned``.
        detector: face detector name; ``detector_options`` its settings.
        detection_frames: frames sampled per video for face detection (``faces.num_frames``);
            ``frame_step`` as ``faces.frame_step``.
        track_score: how a file's track scores combine: ``max``, ``mean`` or ``main``.
        min_track_coverage: share of sampled frames a track other than 0 needs to be scored.
        temporal: the network scores whole clips (a temporal head) rather than frames.
        backbone: the network's name (for reports).
    """

    image_size: int = 96
    frames_per_clip: int = 1
    frame_stride: int = 1
    clips_per_track: int = 8
    margin: float = 1.3
    crop: str = "box"
    detector: str = "blazeface"
    detector_options: dict = field(default_factory=dict)
    detection_frames: int = 16
    frame_step: int = 0
    track_score: str = "max"
    min_track_coverage: float = 0.25
    temporal: bool = False
    backbone: str = ""

    @classmethod
    def from_config(cls, cfg: Any) -> PredictSettings:
        """The settings of an :class:`~dflab.config.ExperimentConfig` (a checkpoint's)."""
        data, faces = cfg.data, cfg.faces
        return cls(image_size=int(data.image_size or 224), frames_per_clip=data.frames_per_clip,
                   frame_stride=data.frame_stride, clips_per_track=data.eval_clips_per_video,
                   margin=faces.margin, crop=faces.crop, detector=faces.detector,
                   detector_options=dict(faces.detector_options), detection_frames=faces.num_frames,
                   frame_step=faces.frame_step, track_score=faces.track_score,
                   min_track_coverage=faces.min_track_coverage, temporal=cfg.model.temporal != "none",
                   backbone=cfg.model.backbone)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PredictSettings:
        """Settings from :meth:`to_dict`'s output.

        Raises:
            ValueError: an unknown key (names it).
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown predict setting(s) {', '.join(unknown)}")
        return cls(**data)

    def differences(self, other: PredictSettings) -> list[str]:
        """The crop settings (``CROP_KEYS``) where ``other`` differs, as ``key: a != b``."""
        return [f"{k}: {getattr(self, k)!r} != {getattr(other, k)!r}" for k in CROP_KEYS
                if getattr(self, k) != getattr(other, k)]
