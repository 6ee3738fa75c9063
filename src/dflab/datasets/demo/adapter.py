"""``data.source: demo``: the built-in demo dataset behind the ordinary adapter interface.

Its ``prepare`` step generates the videos under ``data.root`` on first use (and again only when
the spec or generator version changes); its scan reads the manifest the generator writes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from dflab.datasets.registry import register_dataset
from dflab.datasets.sources import DatasetLayoutError, VideoItem, read_manifest


@dataclass(frozen=True)
class DemoOptions:
    """Options of the ``demo`` adapter.

    Attributes:
        seed: seeds the identity split, each fake's source and every frame
            (:class:`~dflab.datasets.demo.spec.DemoSpec`); the ``data.demo_seed`` key sets it.
    """

    seed: int = 0


def generate(root: Path, options: DemoOptions, progress: bool) -> None:
    """Make the demo videos under ``root`` unless the same spec is there already."""
    from dflab.datasets.demo.build import ensure_demo_dataset
    from dflab.datasets.demo.spec import DemoSpec

    ensure_demo_dataset(root, DemoSpec(seed=options.seed), progress=progress)


@register_dataset("demo", options=DemoOptions, prepare=generate)
def scan_demo(root: Path, options: DemoOptions) -> list[VideoItem]:
    """The built-in demo dataset (generated under data.root on first use)."""
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        raise DatasetLayoutError(f"{manifest}: the demo dataset is not generated yet (run `dflab demo`)")
    return [replace(it, dataset="demo", method="faceswap" if it.label else "") for it in read_manifest(manifest)]
