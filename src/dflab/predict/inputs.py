"""The files a ``dflab predict PATH...`` names: video and image files, folders (searched
recursively) and glob patterns, mixed freely."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv",
                            ".3gp", ".ts", ".mts"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})


class InputError(ValueError):
    """A PATH that names no file (the message names it)."""


@dataclass(frozen=True)
class InputFile:
    """One file to score: its path and ``video`` or ``image``."""

    path: str
    kind: str


def kind_of(path: str | Path) -> str:
    """``image`` for the image suffixes, else ``video`` (the decoder decides whether it is one)."""
    return "image" if Path(path).suffix.lower() in IMAGE_SUFFIXES else "video"


def _media(folder: Path, exclude: Path | None) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in VIDEO_SUFFIXES | IMAGE_SUFFIXES
                  and not (exclude is not None and p.resolve().is_relative_to(exclude)))


def expand_inputs(paths: Sequence[str | Path], exclude: str | Path | None = None) -> tuple[list[InputFile], list[str]]:
    """Every file the arguments name, each once, in argument order (folders and globs sorted),
    and the arguments that name nothing.

    A named file is scored whatever its suffix (an image by suffix, else a video); folders and
    globs contribute only files with a video or image suffix, outside ``exclude`` (the output
    folder, so annotated files of an earlier run are not scored again).

    Returns:
        ``(files, problems)``: ``problems`` has one line per argument that names nothing
        (missing path, a folder or glob with no video or image).

    Raises:
        InputError: no argument names any file (the message names the first problem).
    """
    skip = Path(exclude).resolve() if exclude is not None else None
    out: dict[str, InputFile] = {}
    problems: list[str] = []
    for arg in paths:
        text = str(arg)
        path = Path(text).expanduser()
        if path.is_file():
            found = [path]
        elif path.is_dir():
            found = _media(path, skip)
            if not found:
                problems.append(f"{text}: a folder with no video or image files")
        elif glob.has_magic(text):
            matches = [Path(m) for m in sorted(glob.glob(str(path), recursive=True))]
            found = [m for m in matches if m.is_file() and m.suffix.lower() in VIDEO_SUFFIXES | IMAGE_SUFFIXES
                     and not (skip is not None and m.resolve().is_relative_to(skip))]
            found += [f for m in matches if m.is_dir() for f in _media(m, skip)]
            if not found:
                problems.append(f"{text}: matches no video or image file")
        else:
            problems.append(f"{text}: no such file or folder")
            found = []
        for f in found:
            out.setdefault(str(f), InputFile(str(f), kind_of(f)))
    if not out:
        raise InputError(problems[0] if len(problems) == 1 else "; ".join(problems[:5]))
    return list(out.values()), problems
