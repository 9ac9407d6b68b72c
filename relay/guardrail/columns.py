"""Column context for detectors: a value counts only under a named column of a table.

A bare nine-digit number is an SSN in the "ssn" column of a CSV export and nothing in the
"order id" column. A detector with ``columns`` accepts a match only when it is a whole
field of a delimited line (``,`` ``;`` tab or ``|``) and the header of that line's table
names the field's column one of ``columns``.

The table is the run of lines above the value that contain its delimiter: the topmost of
them is the header. Fields are read with the ``csv`` module, so quoted fields may hold the
delimiter. Header names compare after normalising: lowercase, every run of other than
letters and digits read as one space (``Social_Security-No.`` is ``social security no``).
Each scan remembers, per line and delimiter, where its table's header starts, so a table
of any length costs one walk up its lines, not one per value.
"""

from __future__ import annotations

import csv
import re

DELIMITERS = ",;\t|"
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")


def normalise_name(name: str) -> str:
    return _NOT_ALNUM.sub(" ", name.lower()).strip()


def _fields(line: str, delimiter: str) -> list[str]:
    return next(csv.reader([line], delimiter=delimiter), [])


class Tables:
    """Header lookups for one scanned text; create one per scan."""

    __slots__ = ("_headers", "_text")

    def __init__(self, text: str) -> None:
        self._text = text
        self._headers: dict[tuple[int, str], int] = {}

    def column_of(self, start: int, end: int) -> str | None:
        """The normalised header name over the field text[start:end], or None when it is
        not a whole field of a delimited line under a header."""
        text = self._text
        line_start = text.rfind("\n", 0, start) + 1
        line_end = text.find("\n", end)
        if line_end < 0:
            line_end = len(text)
        before = text[start - 1] if start > line_start else ""
        after = text[end] if end < line_end else ""
        if after == "\r" and end + 1 == line_end:
            after = ""
        delimiter = before or after
        if not delimiter or delimiter not in DELIMITERS or (after and after != delimiter):
            return None
        header_start = self._header_start(line_start, delimiter)
        if header_start == line_start:
            return None  # the value's own line is the header: no column above it
        index = len(_fields(text[line_start:start], delimiter)) - 1 if before else 0
        header_end = text.find("\n", header_start)
        header = _fields(text[header_start:header_end].rstrip("\r"), delimiter)
        return normalise_name(header[index]) if index < len(header) else None

    def _header_start(self, line_start: int, delimiter: str) -> int:
        """Start of the topmost line of the run of lines holding ``delimiter`` that ends
        with the line at ``line_start``."""
        text, memo = self._text, self._headers
        walked: list[int] = []
        pos = line_start
        while True:
            known = memo.get((pos, delimiter))
            if known is not None:
                top = known
                break
            walked.append(pos)
            if pos == 0:
                top = pos
                break
            above = text.rfind("\n", 0, pos - 1) + 1
            if delimiter not in text[above : pos - 1]:
                top = pos
                break
            pos = above
        for pos in walked:
            memo[pos, delimiter] = top
        return top
