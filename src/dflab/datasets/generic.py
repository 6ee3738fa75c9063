"""The generic layouts: a folder of ``real/`` and ``fake/`` videos, and a CSV manifest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dflab.datasets.registry import NoOptions, register_dataset
from dflab.datasets.sources import GROUP_BY, VideoItem, read_manifest, scan_folder


@dataclass(frozen=True)
class FolderOptions:
    """Options of the ``folder`` adapter (``data.options``).

    Attributes:
        group_by: ``path`` (each video is a group of its own) or ``stem`` (videos whose file
            names share a stem, such as ``real/clip0.mp4`` and a fake ``fake/clip0.mp4`` made
            from it, form one group and are kept in one split).
    """

    group_by: str = "path"

    def validate(self) -> None:
        """Raises ValueError naming the option and its valid values."""
        if self.group_by not in GROUP_BY:
            raise ValueError(f"group_by: {self.group_by!r} is not one of {', '.join(GROUP_BY)}")


@register_dataset("folder", options=FolderOptions)
def scan_folder_layout(root: Path, options: FolderOptions) -> list[VideoItem]:
    """Folder layout: real/ and fake/ [, val/{real,fake}, test/{real,fake}]."""
    return scan_folder(root, options.group_by)


@register_dataset("manifest")
def scan_manifest(root: Path, options: NoOptions) -> list[VideoItem]:
    """CSV manifest path,label[,split,group] (data.root is the CSV file)."""
    return read_manifest(root)

