"""What dflab tells its user (result tables, where runs went), as log records.

Library code calls :func:`report` instead of ``print``: the text goes to the ``dflab.report``
logger, which by default writes the plain message to standard output (so the command line,
scripts and notebooks show the tables as before). To silence or redirect it, configure that
logger like any other (``logging.getLogger("dflab.report").setLevel(logging.WARNING)``, or
attach your own handler: the default one is added only while the logger has none).
"""

from __future__ import annotations

import logging
import sys

LOGGER = "dflab.report"


class _Stdout(logging.Handler):
    """The message alone, on whatever ``sys.stdout`` is when it is written."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record) + "\n")
            sys.stdout.flush()
        except Exception:  # a closed or broken stdout must not stop a run
            self.handleError(record)


def report(text: str) -> None:
    """Tell the user ``text`` (a line or a rendered table) through the ``dflab.report`` logger."""
    log = logging.getLogger(LOGGER)
    if not log.handlers:  # the caller has not configured it: plain text on stdout
        log.addHandler(_Stdout())
        log.setLevel(logging.INFO)
        log.propagate = False
    log.info(text.rstrip("\n"))
