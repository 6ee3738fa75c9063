"""Check a dataset before training: counts, missing or broken videos, duplicates and leakage.

``dflab data check`` prints the counts table and every problem and exits non-zero when there is
one; training runs the same check (without decoding) and refuses a broken layout with the same
message. Leakage means a video, an identity (``VideoItem.group``) or the source of a fake
(``VideoItem.sources``) found in two splits.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from dflab.data.sources import SPLITS, DatasetLayoutError, VideoItem

MAX_LISTED = 20
"""Problems of one kind listed in an error message before the rest are counted."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset.

    Attributes:
        kind: ``missing``, ``empty``, ``unreadable``, ``duplicate``, ``split-leak``,
            ``group-leak`` or ``source-leak``.
        path: the video (or the first of the videos) concerned.
        detail: a sentence saying what is wrong.
    """

    kind: str
    path: str
    detail: str


@dataclass
class DatasetCheck:
    """Counts and problems of one dataset (or one combined list of videos)."""

    name: str
    counts: Counter = field(default_factory=Counter)  # (dataset, split, label, method) -> videos
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def table(self) -> str:
        """The counts per dataset, split, label and method, as a rich table rendered to text."""
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{self.name}: videos per split")
        for col in ("dataset", "label", "method", *SPLITS, "total"):
            table.add_column(col, justify="right" if col in (*SPLITS, "total") else "left")
        rows: dict[tuple[str, str, str], Counter] = defaultdict(Counter)
        for (dataset, split, label, method), n in self.counts.items():
            rows[(dataset, "fake" if label else "real", method or "-")][split] += n
        for (dataset, label, method), per in sorted(rows.items()):
            table.add_row(dataset, label, method, *(str(per.get(s, 0)) for s in SPLITS),
                          str(sum(per.values())))
        totals: Counter = Counter()
        for (_, split, _, _), n in self.counts.items():
            totals[split] += n
        table.add_row("all", "", "", *(str(totals.get(s, 0)) for s in SPLITS), str(sum(totals.values())),
                      style="bold")
        console = Console(width=120, record=True, force_terminal=False)
        with console.capture() as cap:
            console.print(table)
        return cap.get()

    def message(self) -> str:
        """Every problem, grouped by kind, naming the files (what an error shows)."""
        if self.ok:
            return f"{self.name}: no problem found"
        lines = [f"{self.name}: {len(self.problems)} problem(s) found"]
        by_kind: dict[str, list[Problem]] = defaultdict(list)
        for p in self.problems:
            by_kind[p.kind].append(p)
        for kind, probs in by_kind.items():
            lines.append(f"  {kind} ({len(probs)}):")
            lines += [f"    {p.path}: {p.detail}" for p in probs[:MAX_LISTED]]
            if len(probs) > MAX_LISTED:
                lines.append(f"    ... and {len(probs) - MAX_LISTED} more")
        return "\n".join(lines)

    def raise_if_broken(self) -> None:
        """Raises DatasetLayoutError with :meth:`message` when a problem was found."""
        if not self.ok:
            raise DatasetLayoutError(self.message())


def _probe(path: str) -> str | None:
    from dflab.data.video import VideoDecodeError, probe_video

    try:
        probe_video(path)
    except (VideoDecodeError, RuntimeError, OSError) as err:
        return str(err).replace(f"{path}: ", "")
    return None


def check_dataset(
    items: Sequence[VideoItem], name: str = "dataset", *, probe: bool = False, workers: int = 4
) -> DatasetCheck:
    """Count the videos and find what would break training or leak between splits.

    Args:
        items: the videos, with their splits assigned.
        name: what the report calls the dataset.
        probe: also open every video and decode its first frame (slow on big datasets).
        workers: threads used to probe.
    """
    report = DatasetCheck(name)
    for it in items:
        report.counts[(it.dataset or "-", it.split or "unassigned", it.label, it.method)] += 1

    present = []
    for it in items:
        file = Path(it.path)
        if not file.is_file():
            report.problems.append(Problem("missing", it.path, "listed but not on disk"))
        elif file.stat().st_size == 0:
            report.problems.append(Problem("empty", it.path, "file is empty (0 bytes)"))
        else:
            present.append(it.path)
    if probe and present:
        unique = sorted(set(present))
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for vpath, err in zip(unique, pool.map(_probe, unique), strict=True):
                if err:
                    report.problems.append(Problem("unreadable", vpath, err))

    by_path: dict[str, list[VideoItem]] = defaultdict(list)
    by_key: dict[tuple[str, str], list[VideoItem]] = defaultdict(list)
    for it in items:
        by_path[it.path].append(it)
        by_key[(it.dataset, it.video_id)].append(it)
    for vpath, its in by_path.items():
        listed = sorted({i.split for i in its})
        if len(listed) > 1:
            report.problems.append(Problem("split-leak", vpath, f"one video in splits {', '.join(listed)}"))
        elif len(its) > 1:
            report.problems.append(Problem("duplicate", vpath, f"listed {len(its)} times"))
    for (dataset, key), its in by_key.items():
        paths = sorted({i.path for i in its})
        if len(paths) > 1:
            report.problems.append(Problem(
                "duplicate", paths[0], f"video id {key!r} of {dataset or 'the dataset'} is also "
                f"{', '.join(paths[1:])}"))

    group_splits: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for it in items:
        if it.group and it.split:
            group_splits[(it.dataset, it.group)].setdefault(it.split, it.path)
    for (_, group), first in group_splits.items():
        if len(first) > 1:
            where = "; ".join(f"{s}: {p}" for s, p in sorted(first.items()))
            report.problems.append(Problem("group-leak", next(iter(first.values())),
                                           f"identity/group {group!r} is in {len(first)} splits ({where})"))

    for it in items:
        for source in it.sources:
            for other in by_key.get((it.dataset, source), []):
                if other.split and it.split and other.split != it.split:
                    report.problems.append(Problem(
                        "source-leak", it.path,
                        f"fake in {it.split} but its source {source!r} is in {other.split} ({other.path})"))
    return report
