"""What a face-index build did, video by video (:class:`VideoOutcome`), and the whole build's
report (:class:`FaceReport`): counts, failures, speed, a summary table and JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dflab.faces.record import VideoFaces


@dataclass
class VideoOutcome:
    """What :meth:`FaceIndex.build` did with one video.

    Attributes:
        path: video file.
        source: ``detected`` (run now), ``cached`` (served from the cache) or ``failed``
            (an exception or a worker crash; nothing was cached).
        sampled: frames sampled.
        found_fraction: fraction of sampled frames with a face.
        detected_frames: frames run through the detector by this build (0 when cached).
        error: why the video failed (names the file), else ``None``.
        num_tracks: face tracks (people) found in the video.
        seek_exact: every seek point checked decodes like a sequential decode (``False``:
            the video is read by decoding forward from verified points only).
        damaged: sampled frames the decoder could not produce.
    """

    path: str
    source: str
    sampled: int
    found_fraction: float
    detected_frames: int = 0
    error: str | None = None
    num_tracks: int = 0
    seek_exact: bool = True
    damaged: int = 0

    @property
    def status(self) -> str:
        """``ok``, ``no_face`` or ``failed``."""
        if self.error is not None:
            return "failed"
        return "ok" if self.found_fraction > 0 else "no_face"


def outcome_of(faces: VideoFaces, source: str) -> VideoOutcome:
    sampled = len(faces.frame_indices)
    detected = sampled if source == "detected" else 0
    return VideoOutcome(
        faces.path,
        source,
        sampled,
        faces.found_fraction,
        detected,
        faces.error,
        num_tracks=len(faces.tracks()),
        seek_exact=faces.seek_exact,
        damaged=len(faces.damaged),
    )


@dataclass
class FaceReport:
    """Per-video outcomes of :meth:`FaceIndex.build` and their summary."""

    detector: str
    num_frames: int
    workers: int
    seconds: float
    videos: list[VideoOutcome]

    @property
    def done(self) -> int:
        """Videos run through the detector by this build."""
        return sum(v.source == "detected" for v in self.videos)

    @property
    def cached(self) -> int:
        """Videos served from the cache (skipped)."""
        return sum(v.source == "cached" for v in self.videos)

    @property
    def with_face(self) -> list[str]:
        """Videos with a face on at least one sampled frame."""
        return [v.path for v in self.videos if v.status == "ok"]

    @property
    def no_face(self) -> list[str]:
        """Videos decoded fine but without any face."""
        return [v.path for v in self.videos if v.status == "no_face"]

    @property
    def failures(self) -> list[tuple[str, str]]:
        """``(path, reason)`` of every video that could not be processed."""
        return [(v.path, v.error or "") for v in self.videos if v.status == "failed"]

    @property
    def mean_found_fraction(self) -> float:
        """Mean fraction of sampled frames with a face, over videos that decoded."""
        fractions = [v.found_fraction for v in self.videos if v.status != "failed"]
        return float(np.mean(fractions)) if fractions else 0.0

    @property
    def mean_tracks(self) -> float:
        """Mean number of face tracks (people) per video, over videos with a face."""
        counts = [v.num_tracks for v in self.videos if v.status == "ok"]
        return float(np.mean(counts)) if counts else 0.0

    @property
    def multi_person(self) -> int:
        """Videos with two or more face tracks."""
        return sum(v.status == "ok" and v.num_tracks >= 2 for v in self.videos)

    @property
    def not_seek_exact(self) -> list[str]:
        """Videos with a seek point that does not decode like a sequential decode."""
        return [v.path for v in self.videos if v.status != "failed" and not v.seek_exact]

    @property
    def with_damage(self) -> list[str]:
        """Videos with sampled frames the decoder could not produce."""
        return [v.path for v in self.videos if v.damaged]

    @property
    def frames_per_second(self) -> float:
        """Sampled frames decoded and detected per second of this build."""
        frames = sum(v.detected_frames for v in self.videos)
        return frames / self.seconds if self.seconds > 0 else 0.0

    def summary_table(self) -> str:
        """Human-readable summary with the lists of failures and no-face videos."""
        rows = [
            ("videos", f"{len(self.videos)}"),
            ("detected now", f"{self.done}"),
            ("from cache", f"{self.cached}"),
            ("with a face", f"{len(self.with_face)}"),
            ("faces found", f"{100 * self.mean_found_fraction:.1f}% of sampled frames (mean)"),
            (
                "faces per video",
                f"{self.mean_tracks:.2f} tracks (mean), {self.multi_person} videos with 2+ people",
            ),
            ("no face", f"{len(self.no_face)}"),
            ("failed", f"{len(self.failures)}"),
            ("seeking", f"{len(self.not_seek_exact)} videos not seek-exact (read from verified "
                        "points only)"),
            ("damaged", f"{len(self.with_damage)} videos with undecodable sampled frames"),
            ("time", f"{self.seconds:.1f} s, {self.frames_per_second:.1f} frames/s"),
        ]
        lines = [f"Face index {self.detector}-n{self.num_frames} ({self.workers} workers)"]
        lines += [f"  {name:<15} {value}" for name, value in rows]
        if self.failures:
            lines.append("Failures:")
            lines += [
                f"  {reason}" if path in reason else f"  {path}: {reason}"
                for path, reason in self.failures
            ]
        if self.no_face:
            lines.append("No face found:")
            lines += [f"  {path}" for path in self.no_face]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Summary numbers plus every per-video outcome, JSON-ready."""
        return {
            "detector": self.detector,
            "num_frames": self.num_frames,
            "workers": self.workers,
            "seconds": self.seconds,
            "done": self.done,
            "cached": self.cached,
            "with_face": len(self.with_face),
            "no_face": len(self.no_face),
            "failed": len(self.failures),
            "mean_found_fraction": self.mean_found_fraction,
            "mean_tracks": self.mean_tracks,
            "multi_person": self.multi_person,
            "not_seek_exact": len(self.not_seek_exact),
            "with_damage": len(self.with_damage),
            "frames_per_second": self.frames_per_second,
            "videos": [asdict(v) | {"status": v.status} for v in self.videos],
        }

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON; returns the file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path
