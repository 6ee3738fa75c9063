"""Video I/O: decode with decord, encode H.264 MP4 with PyAV.

Readers are opened lazily (inside DataLoader workers) with ``num_threads=1``; nothing here
keeps a reader open between calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class VideoDecodeError(RuntimeError):
    """A video could not be opened or decoded; the message names the file."""


@dataclass(frozen=True)
class VideoInfo:
    """Basic facts about a video file."""

    path: str
    num_frames: int
    fps: float
    height: int
    width: int


def _open(path: str | Path, num_threads: int = 1):
    import decord

    path = str(path)
    if not Path(path).is_file():
        raise VideoDecodeError(f"{path}: no such file")
    if Path(path).stat().st_size == 0:
        raise VideoDecodeError(f"{path}: empty file (0 bytes)")
    try:
        return decord.VideoReader(path, num_threads=num_threads, ctx=decord.cpu(0))
    except Exception as err:  # decord raises RuntimeError / DECORDError for corrupt files
        raise VideoDecodeError(f"{path}: cannot open video ({type(err).__name__}: {err})") from err


def probe_video(path: str | Path) -> VideoInfo:
    """Open a video and return its frame count, fps and size.

    Raises:
        VideoDecodeError: the file is missing, empty, corrupt or holds no frames.
    """
    reader = _open(path)
    n = len(reader)
    if n == 0:
        raise VideoDecodeError(f"{path}: video has no frames")
    try:
        h, w = reader[0].shape[:2]
    except Exception as err:
        raise VideoDecodeError(f"{path}: cannot decode the first frame ({err})") from err
    return VideoInfo(str(path), n, float(reader.get_avg_fps()), int(h), int(w))


def read_frames(path: str | Path, indices: Sequence[int] | np.ndarray, num_threads: int = 1) -> np.ndarray:
    """Decode the given frame indices of a video.

    Args:
        path: video file.
        indices: frame indices (any order, repeats allowed); clipped to the video length.
        num_threads: decoder threads; keep 1 inside DataLoader workers.

    Returns:
        ``uint8`` array of shape ``(len(indices), H, W, 3)`` in RGB order.

    Raises:
        VideoDecodeError: the file cannot be opened or the frames cannot be decoded.
    """
    reader = _open(path, num_threads)
    n = len(reader)
    if n == 0:
        raise VideoDecodeError(f"{path}: video has no frames")
    idx = np.clip(np.asarray(indices, dtype=np.int64), 0, n - 1)
    uniq, inverse = np.unique(idx, return_inverse=True)
    try:
        frames = reader.get_batch(uniq.tolist()).asnumpy()
    except Exception as err:
        raise VideoDecodeError(f"{path}: cannot decode frames ({type(err).__name__}: {err})") from err
    return frames[inverse]


def write_video(
    path: str | Path, frames: Iterable[np.ndarray], fps: float = 15.0, crf: int = 23
) -> Path:
    """Encode RGB ``uint8`` frames as an H.264 MP4 (yuv420p).

    Args:
        path: output file; parent folders are created.
        frames: iterable of ``(H, W, 3)`` arrays with even H and W.
        fps: frame rate.
        crf: x264 constant rate factor (lower is better quality).
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), mode="w") as container:
        stream = None
        for frame in frames:
            if stream is None:
                h, w = frame.shape[:2]
                stream = container.add_stream("libx264", rate=round(fps))
                stream.width, stream.height = w, h
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf), "preset": "veryfast"}
            packet = stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24"))
            container.mux(packet)
        if stream is None:
            raise ValueError(f"{path}: no frames to write")
        container.mux(stream.encode(None))
    tmp.replace(path)  # atomic: a killed writer never leaves a half file under the final name
    return path
