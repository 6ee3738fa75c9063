"""Video files that behave like real footage, for tests and benchmarks.

Real benchmark videos break readers in ways tidy test clips never do. These helpers make such
files from any encoded video:

- :func:`remux_false_keyframes`: the container's seek table marks frames that are not
  random-access points (as in files whose sync-sample table lies), so a seek lands on a frame
  that cannot be decoded on its own;
- :func:`damage_bytes`: bytes in the middle of the file overwritten (a bad download or disk);
- :func:`write_vfr_video`: variable frame rate (phone footage);
- :func:`moving_frames`: a textured, moving test picture with the frame number drawn on it,
  so that any wrong frame shows;
- :func:`portrait_frames`: a person in front of a background, the face always in view.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np


def moving_frames(width: int, height: int, count: int, seed: int = 0) -> Iterator[np.ndarray]:
    """``count`` RGB frames ``(height, width, 3)``: a photograph panning under a moving window,
    with sensor noise and the frame number written in the corner."""
    import cv2
    from skimage import data

    rng = np.random.default_rng(seed)
    big = cv2.resize(data.astronaut(), (2 * width, 2 * height), interpolation=cv2.INTER_LINEAR)
    for i in range(count):
        x = int(width * (0.5 + 0.5 * np.sin(i / 40)))
        y = int(height * (0.5 + 0.5 * np.cos(i / 55)))
        frame = big[y : y + height, x : x + width].astype(np.int16)
        frame += rng.integers(-6, 7, frame.shape, dtype=np.int16)
        frame = np.clip(frame, 0, 255).astype(np.uint8)
        scale = max(0.4, height / 240)
        cv2.putText(frame, str(i), (int(10 * scale), int(40 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 0), max(1, int(2 * scale)))
        yield frame


def portrait_frames(width: int, height: int, count: int, seed: int = 0) -> Iterator[np.ndarray]:
    """``count`` RGB frames of a person in front of a background, as in interview footage: a
    portrait (scikit-image's astronaut) as tall as the frame, drifting and slowly zooming over a
    photographed background, with sensor noise. The face is always in view (about a third of the
    frame height)."""
    import cv2
    from skimage import data

    rng = np.random.default_rng(seed)
    back = cv2.resize(data.coffee(), (width, height), interpolation=cv2.INTER_AREA)
    person = data.astronaut()
    for i in range(count):
        zoom = 1.0 + 0.08 * np.sin(i / 60 + seed)
        side = int(height * zoom)
        fg = cv2.resize(person, (side, side), interpolation=cv2.INTER_AREA)
        x = int((width - side) / 2 + 0.15 * width * np.sin(i / 45 + seed))
        y = int(height - side + 0.03 * height * np.cos(i / 30))
        frame = back.copy()
        xs, ys = max(0, x), max(0, y)
        xe, ye = min(width, x + side), min(height, y + side)
        frame[ys:ye, xs:xe] = fg[ys - y : ye - y, xs - x : xe - x]
        noise = rng.integers(-5, 6, frame.shape, dtype=np.int16)
        yield np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def remux_false_keyframes(src: str | Path, dst: str | Path, every: int = 100) -> Path:
    """Copy ``src`` without re-encoding, marking every ``every``-th packet as a keyframe.

    The marked packets are ordinary P/B frames, so the MP4 sync-sample table now lists frames
    that do not decode on their own: a reader that seeks there returns wrong pixels (or none).

    Returns:
        ``dst``.
    """
    import av

    dst = Path(dst)
    with av.open(str(src)) as source, av.open(str(dst), "w") as out:
        stream = source.streams.video[0]
        copy = out.add_stream_from_template(stream)
        for k, packet in enumerate(source.demux(stream)):
            if packet.dts is None:
                continue
            if k and k % every == 0:
                packet.is_keyframe = True
            packet.stream = copy
            out.mux(packet)
    return dst


def damage_bytes(path: str | Path, start: float = 0.45, length: float = 0.003, seed: int = 1) -> Path:
    """Overwrite ``length`` (a share of the file size) of ``path``'s bytes with random bytes,
    starting at ``start`` (a share of the size), in place.

    Returns:
        ``path``.
    """
    path = Path(path)
    size = path.stat().st_size
    junk = np.random.default_rng(seed).integers(0, 256, max(1, int(size * length)), dtype=np.uint8)
    with path.open("r+b") as fh:
        fh.seek(int(size * start))
        fh.write(junk.tobytes())
    return path


def write_vfr_video(path: str | Path, frames: list[np.ndarray], durations_ms: list[int]) -> Path:
    """Encode frames with per-frame durations (variable frame rate, H.264 in MP4).

    Args:
        path: output file.
        frames: RGB ``uint8`` frames.
        durations_ms: how long each frame is shown, milliseconds.

    Returns:
        ``path``.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt, stream.time_base = "yuv420p", Fraction(1, 1000)
        stream.codec_context.time_base = Fraction(1, 1000)
        pts = 0
        for frame, duration in zip(frames, durations_ms, strict=True):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts, vf.time_base = pts, Fraction(1, 1000)
            out.mux(stream.encode(vf))
            pts += duration
        out.mux(stream.encode(None))
    return path
