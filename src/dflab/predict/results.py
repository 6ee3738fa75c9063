"""What scoring one file gives: per-frame scores of every face track, the track scores, the file's
score and verdict, or the reason it has none.

Scores are fake probabilities in ``[0, 1]`` after the model's temperature (see
:mod:`dflab.metrics.calibration`); ``logit`` fields are the raw, uncalibrated network outputs.
A file that cannot be scored (unreadable, no face, every clip undecodable) has ``score`` and
``verdict`` ``None`` and says why in ``reason``: it is never given a default score.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SCORED, NO_FACE, UNREADABLE, FAILED = "scored", "no_face", "unreadable", "failed"
STATUSES = (SCORED, NO_FACE, UNREADABLE, FAILED)


@dataclass
class FrameScore:
    """One scored frame of a face track.

    Attributes:
        frame: display index in the video (0 for an image).
        time_s: presentation time in seconds from the first frame (the container's timestamps,
            so right for variable frame rates; 0 for an image).
        box: ``[x1, y1, x2, y2]`` face box in pixels of the displayed frame.
        logit: raw network output for the clip this frame belongs to.
        score: calibrated fake probability of that clip.
    """

    frame: int
    time_s: float
    box: list[float]
    logit: float
    score: float


@dataclass
class TrackResult:
    """One face track: its score (mean of its clips' probabilities, calibrated) and frames."""

    track: int
    score: float
    frames: list[FrameScore] = field(default_factory=list)


@dataclass
class FileResult:
    """The outcome of scoring one file.

    Attributes:
        path: the file as given (or found under a given folder).
        kind: ``video`` or ``image``.
        status: ``scored``, ``no_face``, ``unreadable`` or ``failed``.
        reason: why there is no score (empty when scored).
        score: calibrated fake probability of the file (its tracks combined as at evaluation),
            ``None`` when not scored.
        verdict: ``fake`` or ``real`` (score at or above the threshold is fake), ``None`` when
            not scored.
        raw_score: the file's fake probability before calibration: the number evaluation
            reports for a test video (``predictions_test.csv``).
        tracks: every scored face track, track 0 (the main face) first.
        num_frames: frames in the video (1 for an image); ``fps``, ``width``, ``height`` as
            displayed.
        seconds: wall time spent on the file.
    """

    path: str
    kind: str
    status: str
    reason: str = ""
    score: float | None = None
    verdict: str | None = None
    raw_score: float | None = None
    tracks: list[TrackResult] = field(default_factory=list)
    num_frames: int = 0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    seconds: float = 0.0

    @property
    def scored(self) -> bool:
        return self.status == SCORED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileResult:
        tracks = [TrackResult(t["track"], t["score"], [FrameScore(**f) for f in t["frames"]])
                  for t in data.get("tracks", [])]
        return cls(**{**data, "tracks": tracks})
