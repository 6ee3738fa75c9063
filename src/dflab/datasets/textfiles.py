"""Reading the text files of a dataset: manifests, split and list files, metadata.

One reader for every CSV, list and JSON file dflab takes from a dataset, so each accepts what
spreadsheet programs and other systems save: a UTF-8 byte-order mark, CRLF (or CR) line ends and
Windows-style ``\\`` separators in relative paths. A file that is not UTF-8 (Latin-1 bytes, UTF-16)
is refused with one line naming the file and the line. Every error is a
:class:`~dflab.datasets.errors.DatasetLayoutError` whose message starts with the file's path.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from dflab.datasets.errors import DatasetLayoutError

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def read_text(path: Path, what: str, missing: str | None = None) -> str:
    """The text of a UTF-8 file, its byte-order mark dropped and its line ends made ``\\n``.

    Args:
        path: the file.
        what: what the file is (``manifest``, ``split file``, ...), for the messages.
        missing: what to say after ``"<path>: "`` when the file does not exist
            (default ``"<what> does not exist"``).

    Raises:
        DatasetLayoutError: the file is missing or unreadable, or not UTF-8 text (the message
            names the file and the line of the first byte that is not UTF-8).
    """
    if not path.is_file():
        raise DatasetLayoutError(f"{path}: {missing or f'{what} does not exist'}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DatasetLayoutError(f"{path}: cannot read the {what} ({err.strerror or err})") from None
    if data.startswith(_UTF16_BOMS):
        raise DatasetLayoutError(f"{path}:1: the {what} is UTF-16 text, not UTF-8; save it as UTF-8")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise DatasetLayoutError(
            f"{path}:{line}: the {what} is not UTF-8 text (byte 0x{data[err.start]:02x} at column "
            f"{column}); save it as UTF-8") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_lines(path: Path, what: str, missing: str | None = None) -> list[tuple[int, str]]:
    """The lines of a list file with their numbers (from 1), without line ends.

    Blank lines are kept (their numbers count); arguments and errors as :func:`read_text`.
    """
    return list(enumerate(read_text(path, what, missing).split("\n"), start=1))


@dataclass(frozen=True)
class CsvRow:
    """One record of a CSV file.

    Attributes:
        line: line number of the record in the file (from 1; the header is line 1).
        values: column name -> value (``""`` for a missing trailing field).
    """

    line: int
    values: dict[str, str]

    def get(self, column: str) -> str:
        """The value in ``column`` with surrounding spaces removed (``""`` if absent)."""
        return (self.values.get(column) or "").strip()


def read_csv(path: Path, what: str, required: Iterable[str], missing: str | None = None
             ) -> tuple[list[str], list[CsvRow]]:
    """The header and records of a CSV file (comma-separated, first line the header).

    Header names are stripped of spaces; blank lines are skipped; a quoted field may span lines.

    Args:
        path: the file.
        what: what the file is, for the messages.
        required: columns the header must hold.
        missing: as in :func:`read_text`.

    Returns:
        The column names and the records.

    Raises:
        DatasetLayoutError: as :func:`read_text`, or a required column is missing (the message
            lists the header found), or the CSV cannot be parsed (names the line).
    """
    reader = csv.reader(io.StringIO(read_text(path, what, missing), newline=""))
    try:
        header = [name.strip() for name in next(reader, [])]
        wanted = list(required)
        if not set(wanted) <= set(header):
            raise DatasetLayoutError(f"{path}: header must hold {','.join(wanted)} "
                                     f"(found {','.join(header) or 'an empty line'})")
        rows = []
        for record in reader:
            if not any(field.strip() for field in record):
                continue
            values = dict(zip(header, record, strict=False))
            rows.append(CsvRow(reader.line_num, {name: values.get(name, "") for name in header}))
    except csv.Error as err:
        raise DatasetLayoutError(f"{path}:{reader.line_num}: not a readable {what} ({err})") from None
    return header, rows


def read_json(path: Path, what: str, missing: str | None = None) -> Any:
    """A JSON file, parsed (arguments and errors as :func:`read_text`; a syntax error names its line)."""
    try:
        return json.loads(read_text(path, what, missing))
    except json.JSONDecodeError as err:
        raise DatasetLayoutError(
            f"{path}:{err.lineno}: not a readable {what} ({err.msg}, column {err.colno})") from None


def relative_path(text: str) -> PurePosixPath:
    """A relative path written in a file, with Windows-style ``\\`` separators read as ``/``."""
    return PurePosixPath(text.strip().replace("\\", "/"))
