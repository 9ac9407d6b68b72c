"""Hold-back for streamed text: release what cannot be part of a match, hold the rest.

Rules of this file (sans-I/O, pure):
- `HoldBack.feed(piece)` appends a streamed piece and returns the text that is safe to
  release now plus the findings that lie wholly inside it (offsets into the released
  text). Everything else stays held until a later piece or `final=True`.
- Safe means: before the word in progress (values do not span whitespace), before any
  trailing run of digits and number punctuation (card and phone numbers do span spaces),
  before an unterminated `-----BEGIN` block, and before the start of any finding that
  reaches the cut (it may still grow).
- The hold is bounded: past `max_hold` held characters the oldest are released (scanned
  first), so a stream can never stall on its own output.
- Detectors that need a label before the value ("SSN 123…") see up to `context`
  characters of already released text; findings starting there were decided already.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from relay.guardrail.scan import Finding

_NUMBERISH = frozenset("0123456789+-().")
_SPACE = frozenset(" \t\r\n")
_PEM_END = re.compile(r"-----END [^\n-]*-----")


def safe_cut(text: str, base: int) -> int:
    """Index up to which `text` may be released, ignoring findings (see module rules)."""
    cut = len(text)
    while cut > base and text[cut - 1] not in _SPACE:
        cut -= 1  # hold the word in progress
    end = cut
    while end > base and text[end - 1] in _SPACE:
        end -= 1
    if end > base and text[end - 1] in _NUMBERISH:
        start = end
        while start > base and (text[start - 1] in _NUMBERISH or text[start - 1] in _SPACE):
            start -= 1
        while text[start] in _SPACE:
            start += 1
        cut = start
    # A PEM block spans lines: hold from its BEGIN line until its END line arrives.
    begin = text.rfind("-----BEGIN", base)
    if begin >= 0 and not _PEM_END.search(text, begin):
        cut = min(cut, begin)
    return cut


class HoldBack:
    __slots__ = ("_context", "_context_size", "_held", "_max_hold", "_scan")

    def __init__(
        self, scan: Callable[[str], list[Finding]], max_hold: int = 4096, context: int = 64
    ) -> None:
        self._scan = scan
        self._max_hold = max_hold
        self._context_size = context
        self._held = ""
        self._context = ""

    @property
    def held(self) -> str:
        return self._held

    def feed(self, piece: str, final: bool = False) -> tuple[str, list[Finding]]:
        text = self._context + self._held + piece
        base = len(self._context)
        findings = self._scan(text)
        cut = len(text) if final else safe_cut(text, base)
        if not final:
            for finding in sorted(findings, key=lambda f: f.start, reverse=True):
                if finding.start < cut < finding.end or (finding.start < cut == finding.end
                                                         and cut == len(text)):
                    cut = finding.start
            if len(text) - cut > self._max_hold:
                cut = len(text) - self._max_hold
        cut = max(cut, base)
        released = text[base:cut]
        inside = [
            Finding(f.detector, f.category, f.start - base, f.end - base)
            for f in findings
            if f.start >= base and f.end <= cut
        ]
        self._held = text[cut:]
        self._context = (self._context + released)[-self._context_size :]
        return released, inside
