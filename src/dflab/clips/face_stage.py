"""The face stage of a dataset, in one place: resolve the videos, detect and track faces once
(cached per video, packed per dataset), and read the results back.

Used by the DataModule (``prepare_data`` builds, ``setup`` reads), by ``dflab faces`` and by
``dflab data check``; see :mod:`dflab.faces.index` for what one video's entry holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dflab.config.schema import DataConfig, FacesConfig
from dflab.datasets.resolve import dataset_roots
from dflab.datasets.sources import VideoItem
from dflab.faces.index import FaceIndex
from dflab.faces.pack import (
    build_dataset_index,
    dataset_pack_name,
    indexed_faces,
    load_dataset_faces,
)
from dflab.faces.record import VideoFaces
from dflab.faces.report import FaceReport


@dataclass
class FaceStage:
    """The face index of one dataset: where it lives and under which pack name."""

    index: FaceIndex
    source: str

    @classmethod
    def of(cls, data: DataConfig, faces: FacesConfig) -> FaceStage:
        """The face stage of an experiment's datasets; its cache is keyed relative to their
        folders, so machines mounting them at different paths share it."""
        return cls(FaceIndex.from_config(faces, roots=list(dataset_roots(data).values())), data.source)

    def pack_name(self, items: Sequence[VideoItem]) -> str:
        return dataset_pack_name(self.source, [self.index.portable_path(it.path) for it in items])

    def build(self, items: Sequence[VideoItem], workers: int, progress: bool = True) -> tuple[FaceReport, Path]:
        """Detect faces in every video not indexed yet (``workers`` processes) and pack the
        dataset's entries into one file; returns the build report and the pack."""
        return build_dataset_index(self.index, [it.path for it in items], self.pack_name(items),
                                   workers=workers, progress=progress)

    def load(self, items: Sequence[VideoItem]) -> list[VideoFaces]:
        """Every video's entry, in ``items`` order (from the pack; missing ones detected now)."""
        return load_dataset_faces(self.index, [it.path for it in items], self.pack_name(items))

    def indexed(self, items: Sequence[VideoItem]) -> dict[str, VideoFaces]:
        """The entries already indexed, by path; detects nothing."""
        return indexed_faces(self.index, [it.path for it in items], self.pack_name(items))
