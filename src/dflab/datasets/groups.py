"""Helpers shared by adapters that draw their own splits: identity clusters and seeded splits.

Small datasets (16 subject pairs in DeepfakeTIMIT, 49 pairs in UADFV) and datasets with a few
large identity clusters (Celeb-DF) split badly with one coin flip per group: a 10 % validation
share of 16 pairs is empty one time in five. :func:`split_groups` instead walks the groups in a
seeded-hash order and gives each to the split it brings closest to its target share of videos,
so the shares are met as closely as the group sizes allow, and the result depends only on the
seed and the groups (not on the order the files were listed in).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from dflab.datasets.sources import unit_hash


def clusters(nodes: Iterable[str], links: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Connected components of ``nodes`` joined by ``links`` (union-find).

    Returns:
        every node (including those only named in a link) -> the name of its cluster, the
        smallest node of the cluster in natural order (``id2`` before ``id10``).
    """
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for node in nodes:
        find(node)
    for a, b in links:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb, key=natural_key)] = min(ra, rb, key=natural_key)
    return {node: find(node) for node in parent}


def natural_key(text: str) -> tuple[str | int, ...]:
    """Sort key reading digit runs as numbers (``id2`` < ``id10``)."""
    return tuple(int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", text)))


def split_groups(
    sizes: Mapping[str, int], val_fraction: float, test_fraction: float = 0.0, seed: int = 0
) -> dict[str, str]:
    """Give every group a split (``train``, ``val`` or ``test``), whole.

    Groups are visited in the order of a seeded hash of their names. A group goes to ``test``
    when adding it brings the test split closer to ``test_fraction`` of all videos than leaving
    it out, else to ``val`` on the same rule, else to ``train``.

    Args:
        sizes: group name -> number of videos in it.
        val_fraction: target share of videos in the validation split.
        test_fraction: target share of videos in the test split.
        seed: changes the order the groups are visited in, hence which groups are drawn.

    Returns:
        group name -> split.
    """
    total = sum(sizes.values())
    targets = {"test": test_fraction * total, "val": val_fraction * total}
    filled = {"test": 0.0, "val": 0.0}
    out = {}
    for group in sorted(sizes, key=lambda g: (unit_hash(g, seed), g)):
        size = sizes[group]
        split = "train"
        for candidate in ("test", "val"):
            if size and filled[candidate] + size / 2 < targets[candidate]:
                split = candidate
                filled[candidate] += size
                break
        out[group] = split
    return out


def check_fractions(val_fraction: float, test_fraction: float | None = None) -> None:
    """Raises ValueError naming the option when a share is out of range or the two exceed 1.

    ``val_fraction`` must be in [0, 1), ``test_fraction`` in [0, 1] (1 puts every video in the
    test split, for a test-only dataset), and their sum at most 1.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction: {val_fraction} is not in [0, 1)")
    if test_fraction is None:
        return
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction: {test_fraction} is not in [0, 1]")
    if val_fraction + test_fraction > 1.0:
        raise ValueError(f"val_fraction + test_fraction: {val_fraction} + {test_fraction} is more than 1")
