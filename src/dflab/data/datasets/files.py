"""Reading the split and metadata files of dataset releases, with errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dflab.data.sources import DatasetLayoutError


def read_text(path: Path, missing: str, kind: str) -> str:
    """The text of a release file.

    Args:
        path: the file.
        missing: what to say when it does not exist (after ``"<path>: "``).
        kind: what the file is, for ``"<path>: not a readable <kind> (<error>)"``.

    Raises:
        DatasetLayoutError: missing or unreadable file.
    """
    if not path.is_file():
        raise DatasetLayoutError(f"{path}: {missing}")
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetLayoutError(f"{path}: not a readable {kind} ({err})") from None


def read_json(path: Path, missing: str, kind: str) -> Any:
    """A release's JSON file, parsed (arguments and errors as :func:`read_text`)."""
    text = read_text(path, missing, kind)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DatasetLayoutError(f"{path}: not a readable {kind} ({err})") from None
