"""The generic layouts: a folder of ``real/`` and ``fake/`` videos, a CSV manifest, the demo."""

from __future__ import annotations

from pathlib import Path

from dflab.data.datasets.registry import NoOptions, register_dataset
from dflab.data.sources import DatasetLayoutError, VideoItem, read_manifest, scan_folder


@register_dataset("folder")
def scan_folder_layout(root: Path, options: NoOptions) -> list[VideoItem]:
    """Folder layout: real/ and fake/ [, val/{real,fake}, test/{real,fake}]."""
    return scan_folder(root)


@register_dataset("manifest")
def scan_manifest(root: Path, options: NoOptions) -> list[VideoItem]:
    """CSV manifest path,label[,split,group] (data.root is the CSV file)."""
    return read_manifest(root)


@register_dataset("demo")
def scan_demo(root: Path, options: NoOptions) -> list[VideoItem]:
    """The built-in demo dataset (generated under data.root on first use)."""
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        raise DatasetLayoutError(f"{manifest}: the demo dataset is not generated yet (run `dflab demo`)")
    return read_manifest(manifest)
