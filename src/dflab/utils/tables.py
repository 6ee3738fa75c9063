"""Rich tables as plain text, for printing and for text files alike."""

from __future__ import annotations

from typing import Any


def render_table(table: Any, width: int = 120) -> str:
    """The text of a ``rich.table.Table`` laid out ``width`` columns wide, without colour codes."""
    from rich.console import Console

    console = Console(width=width, record=True, force_terminal=False)
    with console.capture() as captured:
        console.print(table)
    return captured.get()
