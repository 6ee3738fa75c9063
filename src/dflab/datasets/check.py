"""Check a dataset before training: counts, missing or broken videos, duplicates and leakage.

``dflab data check`` prints the counts table and every problem and exits non-zero when there is
one; training runs the same check (without decoding) and refuses a broken layout with the same
message. Leakage means a video, an identity (``VideoItem.group``) or the source of a fake
(``VideoItem.sources``) found in two splits. Videos are told apart by path and by id
(``VideoItem.video_id``: the adapter's key, such as the path relative to the dataset root, else
the path), never by bare file name: ``real/clip0.mp4`` and ``fake/clip0.mp4`` are two videos.

With ``deep=True`` every frame of every video is decoded: damaged videos are problems (listed
with the frame ranges that do not decode), and the seek check of :mod:`dflab.video.access`
runs on every video, so the report says how many cannot be seeked exactly (dflab reads those by
decoding forward from verified points; it is a fact about the files, not a problem).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from dflab.datasets.sources import SPLITS, DatasetLayoutError, VideoItem
from dflab.utils.tables import render_table

MAX_LISTED = 20
"""Problems of one kind listed in an error message before the rest are counted."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset.

    Attributes:
        kind: ``missing``, ``empty``, ``unreadable``, ``damaged``, ``duplicate``, ``split-leak``,
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
    #: videos whose seeking was checked (by ``deep`` or the face index) and those of them with
    #: a seek point that does not decode like a sequential decode
    seek_checked: int = 0
    not_seek_exact: list[str] = field(default_factory=list)
    seek_source: str = ""

    def seeking(self) -> str:
        """One paragraph on how many videos can be seeked exactly, or how to find out."""
        if not self.seek_checked:
            return ("Seeking: not checked yet (run `dflab faces` or `dflab data check --deep`); "
                    "dflab checks every video when it builds the face index.")
        lines = [f"Seeking ({self.seek_source}): {self.seek_checked - len(self.not_seek_exact)} of "
                 f"{self.seek_checked} videos seek exactly; {len(self.not_seek_exact)} cannot be "
                 "seeked exactly and are read by decoding forward from verified points only"]
        lines += [f"  {p}" for p in self.not_seek_exact[:MAX_LISTED]]
        if len(self.not_seek_exact) > MAX_LISTED:
            lines.append(f"  ... and {len(self.not_seek_exact) - MAX_LISTED} more")
        return "\n".join(lines)

    @property
    def ok(self) -> bool:
        return not self.problems

    def table(self) -> str:
        """The counts per dataset, split, label and method, as a rich table rendered to text."""
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
        return render_table(table, 120)

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


def _deep_check(report: DatasetCheck, paths: list[str], workers: int, progress: bool) -> None:
    from tqdm.auto import tqdm

    unreadable = {p.path for p in report.problems if p.kind == "unreadable"}
    todo = [p for p in paths if p not in unreadable]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = tqdm(pool.map(_decode_all, todo), total=len(todo), desc="decoding every frame",
                       unit="video", disable=not progress, dynamic_ncols=True)
        for vpath, (damage, exact) in zip(todo, results, strict=True):
            if damage:
                report.problems.append(Problem("damaged", vpath, damage))
            if not exact:
                report.not_seek_exact.append(vpath)
    report.seek_checked, report.seek_source = len(todo), "every frame decoded"


def _probe(path: str) -> str | None:
    from dflab.video import VideoDecodeError, probe

    try:
        probe(path)
    except (VideoDecodeError, RuntimeError, OSError) as err:
        return str(err).replace(f"{path}: ", "")
    return None


def _decode_all(path: str) -> tuple[str | None, bool]:
    """Decode every frame of ``path``: what is damaged (``None``: nothing) and whether it seeks exactly."""
    from dflab.video import VideoDecodeError, check_decode, format_ranges, probe

    try:
        scan = check_decode(path, range(probe(path).num_frames), keep=False)
    except (VideoDecodeError, RuntimeError, OSError) as err:
        return str(err).replace(f"{path}: ", ""), True
    if scan.damaged or scan.errors:
        what = f"frames {format_ranges(scan.damaged)} could not be decoded" if scan.damaged else "decode errors"
        return f"{what} ({scan.errors[0] if scan.errors else 'no frame came out'})", scan.seek.exact
    return None, scan.seek.exact


def check_dataset(
    items: Sequence[VideoItem], name: str = "dataset", *, probe: bool = False, workers: int = 4,
    deep: bool = False, progress: bool = False,
) -> DatasetCheck:
    """Count the videos and find what would break training or leak between splits.

    Args:
        items: the videos, with their splits assigned.
        name: what the report calls the dataset.
        probe: also open every video and decode its first frame (slow on big datasets).
        workers: threads used to probe or decode.
        deep: decode every frame of every video: damaged videos become problems (with the
            frame ranges that do not decode) and every video's seeking is checked.
        progress: show a progress bar with ETA while decoding (``deep``).
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
    if (probe or deep) and present:
        unique = sorted(set(present))
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for vpath, err in zip(unique, pool.map(_probe, unique), strict=True):
                if err:
                    report.problems.append(Problem("unreadable", vpath, err))
        if deep:
            _deep_check(report, unique, workers, progress)

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
