"""Keep passwords out of what dflab logs: MLflow params and tags, reports, error messages."""

from __future__ import annotations

import re

__all__ = ["redact"]

_DB_SCHEMES = ("postgres", "mysql", "mariadb", "mssql", "oracle", "cockroachdb")


def redact(url: str) -> str:
    """``url`` (or any text: a log line, an error message) with every password in it as ``***``.

    ``scheme://user:pass@host`` becomes ``scheme://user:***@host`` wherever such a URL appears
    (a URL ends at white space or a quote), and ``password=...`` (a query parameter or a
    libpq keyword) becomes ``password=***``. URLs without a password (``http://host:5000``,
    ``postgresql://user@host/db``, ``sqlite:///a.db``) and paths come back unchanged. In
    database URLs (as in SQLAlchemy) an unescaped ``/`` or ``@`` may sit in the password: all
    up to the URL's last ``@`` before any ``?`` is hidden; other URLs follow RFC 3986.
    """
    return _SECRET_PARAM.sub(r"\1***", _URL.sub(_hide_password, url))


_URL = re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]*://)([^\s'\"<>`]*)")
_SECRET_PARAM = re.compile(r"(?i)\b((?:password|passwd|pwd)=)[^\s&;#'\"]*")


def _hide_password(m: re.Match[str]) -> str:
    scheme, rest = m.group(1), m.group(2)
    if scheme.lower().startswith(_DB_SCHEMES):
        rest = re.sub(r"^([^:/?#@]*):[^?]*@", r"\1:***@", rest, count=1)
    else:
        cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
        userinfo, at, hostport = rest[:cut].rpartition("@")
        if at and ":" in userinfo:
            rest = f"{userinfo.split(':', 1)[0]}:***@{hostport}{rest[cut:]}"
    return scheme + rest
