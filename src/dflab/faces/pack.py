"""One compact file per dataset holding the face index of all its videos.

The per-video ``.npz`` entries of :class:`~dflab.faces.index.FaceIndex` are what make a build
resumable and safe to kill; reading tens of thousands of them at every start is not fast. After
a build, the entries of one dataset are packed into one file::

    <index folder>/datasets/<dataset name>.npz

holding every array concatenated with per-video offsets, the cache keys and the metadata.
Building and loading a dataset read the pack and fall back to the per-video entries (or
detection) only for videos the pack lacks or holds in an older version, then rewrite it. The pack is
written atomically, so a killed process leaves the previous pack or none.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dflab.faces.index import _ARRAYS, _CACHE_VERSION, FaceIndex
from dflab.faces.record import VideoFaces
from dflab.faces.report import FaceReport
from dflab.utils.atomic import atomic_write


def dataset_pack_name(source: str, paths: Sequence[str]) -> str:
    """Pack name of a dataset: its source plus a digest of its video paths."""
    digest = hashlib.sha1("\n".join(sorted(map(str, paths))).encode()).hexdigest()
    return f"{source}-{digest[:10]}"


def pack_file(index: FaceIndex, name: str) -> Path:
    """Where the pack of dataset ``name`` lives (the name is made file-safe)."""
    safe = re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_") or "dataset"
    return index.folder / "datasets" / f"{safe}.npz"


def write_pack(index: FaceIndex, faces: Sequence[VideoFaces], name: str) -> Path:
    """Pack ``faces`` (entries of ``index``) as dataset ``name``; returns the file."""
    keys = [index.key(f.path) or "" for f in faces]
    meta = [{"path": os.path.abspath(f.path), "num_frames": f.num_frames, "fps": f.fps,
             "height": f.height, "width": f.width, "error": f.error,
             "seek_unchecked": f.seek_unchecked} for f in faces]
    arrays: dict[str, np.ndarray] = {}
    for array in _ARRAYS:
        parts = [np.asarray(getattr(f, array)) for f in faces]
        arrays[array] = np.concatenate(parts) if parts else np.zeros(0)
        arrays[f"offsets_{array}"] = np.cumsum([0] + [len(p) for p in parts]).astype(np.int64)
    file = pack_file(index, name)
    header = {"version": _CACHE_VERSION, "detector": index.detector.name, "videos": meta}
    arrays["keys"], arrays["header"] = np.array(keys), np.array(json.dumps(header))
    with atomic_write(file) as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    return file


def _read(file: Path) -> dict[str, VideoFaces]:
    """Entries of a pack by cache key (empty if missing, unreadable or of another version)."""
    try:
        with np.load(file, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            keys = [str(k) for k in data["keys"]]
            arrays = {n: data[n] for n in data.files if n not in ("keys", "header")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return {}
    if header.get("version") != _CACHE_VERSION:
        return {}
    out = {}
    for k, (key, meta) in enumerate(zip(keys, header["videos"], strict=True)):
        fields = {}
        for array in _ARRAYS:
            lo, hi = arrays[f"offsets_{array}"][k : k + 2]
            fields[array] = arrays[array][lo:hi]
        out[key] = VideoFaces(**meta, **fields)
    return out


def _packed_by_path(index: FaceIndex, paths: Sequence[str], name: str) -> tuple[dict[str, VideoFaces], int]:
    """Entries of ``paths`` found in the dataset's pack, by path, and how many the pack holds."""
    packed = _read(pack_file(index, name))
    found: dict[str, VideoFaces] = {}
    for path in paths:
        key = index.key(path)
        faces = packed.get(key) if key else None
        if faces is not None:
            faces.path = str(path)
            found[str(path)] = faces
    return found, len(packed)


def indexed_faces(index: FaceIndex, paths: Sequence[str], name: str) -> dict[str, VideoFaces]:
    """The entries of ``paths`` already in the index (pack or per-video files), by path.

    Detects nothing: videos not indexed yet are simply absent.
    """
    found, _ = _packed_by_path(index, paths, name)
    for path in paths:
        if str(path) not in found:
            faces = index.cached(path)
            if faces is not None:
                found[str(path)] = faces
    return found


def build_dataset_index(index: FaceIndex, paths: Sequence[str], name: str, workers: int = 2,
                        progress: bool = True) -> tuple[FaceReport, Path]:
    """Build the face index of a dataset (see :meth:`FaceIndex.build`) and pack it.

    Videos in the pack are not read again; the pack is rewritten only when videos were
    added, detected or dropped since it was written.
    """
    unique = list(dict.fromkeys(map(str, paths)))
    found, size = _packed_by_path(index, unique, name)
    report = index.build(unique, workers=workers, progress=progress, known=found)
    file = pack_file(index, name)
    if len(found) < len(unique) or size != len(found):
        entries = [found.get(p) or index.cached(p) for p in unique]
        write_pack(index, [e for e in entries if e is not None], name)
    return report, file


def load_dataset_faces(index: FaceIndex, paths: Sequence[str], name: str) -> list[VideoFaces]:
    """Face index entries of ``paths``, from the dataset's pack where it has them.

    Videos the pack lacks come from their per-video entry (detected now if missing), and the
    pack is rewritten when any was missing, so the next start reads one file.
    """
    found, size = _packed_by_path(index, paths, name)
    out = [found.get(str(p)) or index.get(p) for p in paths]
    if len(found) < len(out) or size != len(out):
        write_pack(index, out, name)
    return out
