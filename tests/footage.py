"""Test footage helpers: the sequential-decode reference and a moving face video."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import cv2
import numpy as np
from skimage import data as skdata

from dflab.video import probe


def sequential_decode(path: str | Path) -> dict[int, np.ndarray]:
    """Every frame a plain forward decode gives, by display index (damaged packets skipped).

    Frame ``i`` is the frame with the ``i``-th smallest timestamp when the decoder puts frames
    out in timestamp order with distinct timestamps (then a frame lost to damage leaves its
    number unused), else simply the ``i``-th frame put out, which is what a player shows.
    """
    frames: list[tuple[int | None, np.ndarray]] = []
    size: tuple[int, int] | None = None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"
        for packet in container.demux(stream):
            try:
                decoded = packet.decode()
            except av.FFmpegError:
                continue
            for f in decoded:
                size = size or (f.width, f.height)  # a stream that changes size is shown at its first
                rgb = f.to_ndarray(format="rgb24", src_color_range=f.color_range or None,
                                   width=size[0], height=size[1])
                frames.append((f.pts, np.ascontiguousarray(np.rot90(rgb, round((f.rotation or 0) / 90) % 4))))
    stamps = [p for p, _ in frames]
    info = probe(path)
    if info.ordered and None not in stamps and all(b > a for a, b in itertools.pairwise(stamps)):
        return {int(np.searchsorted(info.pts, p)): rgb for p, rgb in frames}
    return dict(enumerate(rgb for _, rgb in frames))


def mad(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 images (0-255)."""
    return float(np.abs(a.astype(np.int16) - b).mean())


def face_frames(n: int, size: int = 128):
    face = cv2.resize(skdata.astronaut()[:300, 100:400], (size, size), interpolation=cv2.INTER_AREA)
    for t in range(n):
        dx, dy = 6 * np.sin(t / 15), 4 * np.cos(t / 23)
        yield cv2.warpAffine(face, np.float32([[1, 0, dx], [0, 1, dy]]), (size, size),
                             borderMode=cv2.BORDER_REFLECT)


def manifest_with(small_manifest: Path, out: Path, *extra: dict[str, str]) -> Path:
    """A copy of the demo manifest (absolute paths) plus ``extra`` rows (``path``, ``label``,
    ``split``, ``group``...); returns the new CSV."""
    rows = small_manifest.read_text().splitlines()
    header = rows[0].split(",")
    col = header.index("path")
    lines = [rows[0]]
    for r in rows[1:]:
        cells = r.split(",")
        cells[col] = str((small_manifest.parent / cells[col]).resolve())
        lines.append(",".join(cells))
    lines += [",".join(str(row.get(h, "")) for h in header) for row in extra]
    out.write_text("\n".join(lines) + "\n")
    return out
