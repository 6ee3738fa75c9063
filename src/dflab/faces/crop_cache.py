"""Optional on-disk cache of face crops, so repeated epochs skip video decoding.

Crops are stored losslessly (``.npy``, uint8, before augmentation: compression artefacts are
what a deepfake detector looks at, so a lossy cache would change the task) as one file per
``(video, track, frame)``::

    <cache_dir>/crops/<face index folder>/<crop>-<size>px-m<margin>/<video key>/t<track>_f<frame>.npy

The video key is the face index's key (absolute path, size and modification time), and the
face index folder names the detector and frame sampling, so a changed video, detector or crop
setting never reads stale crops. Files are written to a temporary name and renamed, so a killed
DataLoader worker leaves no half-written crop, and concurrent workers never clash. Validation
and test clips are the same every epoch (all hits from the second epoch on); training clips are
drawn at random, so their hit rate grows with the epochs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dflab.utils.atomic import atomic_write


class CropCache:
    """Face crops of one face index and one crop geometry.

    Args:
        root: the folder of this index and geometry (see :meth:`for_index`).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @classmethod
    def for_index(
        cls, cache_dir: str | os.PathLike[str], index_folder: str, crop: str, size: int,
        margin: float,
    ) -> CropCache:
        """The cache of crops cut with ``crop``/``size``/``margin`` from one face index."""
        return cls(Path(cache_dir) / "crops" / index_folder / f"{crop}-{size}px-m{margin:g}")

    def __repr__(self) -> str:
        return f"CropCache({str(self.root)!r})"

    def _file(self, video_key: str, track: int, frame: int) -> Path:
        return self.root / video_key / f"t{track}_f{int(frame)}.npy"

    def load(self, video_key: str, track: int, frames: np.ndarray) -> np.ndarray | None:
        """The crops ``(T, S, S, 3)`` of ``frames``, or ``None`` unless every one is cached."""
        crops = []
        for frame in frames:
            try:
                crops.append(np.load(self._file(video_key, track, frame), allow_pickle=False))
            except (OSError, ValueError, EOFError):  # missing, or unreadable: decode again
                return None
        if len({c.shape for c in crops}) != 1:
            return None
        return np.stack(crops)

    def store(self, video_key: str, track: int, frames: np.ndarray, crops: np.ndarray) -> None:
        """Save ``crops`` (``(T, S, S, 3)`` uint8) of ``frames``; a full disk is not fatal."""
        folder = self.root / video_key
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for frame, crop in zip(frames, crops, strict=True):
                target = self._file(video_key, track, frame)
                if target.exists():
                    continue
                with atomic_write(target) as fh:
                    np.save(fh, np.ascontiguousarray(crop, dtype=np.uint8))
        except OSError:
            return

    def size_bytes(self) -> int:
        """Disk space the cached crops take."""
        return sum(f.stat().st_size for f in self.root.rglob("*.npy"))
