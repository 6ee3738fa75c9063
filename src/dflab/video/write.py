"""Encode frames as an MP4 with PyAV (H.264 by default), written atomically."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np


def write_video(
    path: str | Path, frames: Iterable[np.ndarray], fps: float = 15.0, crf: int = 23, *,
    codec: str = "libx264", pix_fmt: str = "yuv420p", options: Mapping[str, str] | None = None,
    rotation: int = 0,
) -> Path:
    """Encode RGB ``uint8`` frames as a video file.

    Args:
        path: output file; parent folders are created. Written to a temporary name and
            renamed, so a killed writer never leaves a half file under the final name.
        frames: iterable of ``(H, W, 3)`` arrays (even H and W for 4:2:0).
        fps: frame rate.
        crf: constant rate factor of x264/x265 (lower is better quality).
        codec: FFmpeg encoder (``libx264``, ``libx265``, ``mpeg4``, ...).
        pix_fmt: encoded pixel format (``yuv420p``, ``yuv444p``, ...).
        options: more encoder options (e.g. ``{"g": "30", "bf": "3"}``).
        rotation: display rotation to record in the container, degrees counter-clockwise
            as playback applies it (players show the frames turned by this much).

    Returns:
        ``path``.

    Raises:
        ValueError: ``frames`` is empty.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.part{path.suffix}")
    try:
        with av.open(str(tmp), mode="w") as container:
            stream: Any = None
            for frame in frames:
                if stream is None:
                    h, w = frame.shape[:2]
                    stream = container.add_stream(codec, rate=round(fps))
                    stream.width, stream.height = w, h
                    stream.pix_fmt = pix_fmt
                    opts: dict[str, str] = (
                        {"crf": str(crf), "preset": "veryfast"} if codec in ("libx264", "libx265") else {})
                    if codec == "libx265":
                        opts["x265-params"] = "log-level=error"
                    stream.options = opts | dict(options or {})
                    if rotation:
                        stream.set_display_rotation(rotation)
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                container.mux(stream.encode(vf))
            if stream is None:
                raise ValueError(f"{path}: no frames to write")
            container.mux(stream.encode(None))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
