"""scan(text, detector_set) -> list[Finding]: pure, synchronous, no I/O.

Theory of operation
-------------------
1. Normalise. Each character is NFKC-normalised on its own and Unicode format characters
   (category Cf: zero-width space/joiner/non-joiner, BOM, soft hyphen, bidi marks…) are
   dropped, so fullwidth digits and zero-width obfuscation do not slip through. ``index``
   maps every normalised character to the original character it came from; ASCII input has
   nothing to normalise and takes an identity fast path.
2. Prefilter. One Aho-Corasick pass over the lowercased normalised text finds the anchor
   hits of every detector at once (touching hits merge into one region, so a run of
   digits is one region); detectors without a hit cost nothing more.
3. Confirm. Per detector, each anchor hit opens a window of ``window`` characters either
   side (or its own ``[before, after]``); overlapping windows merge. A detector with a
   ``gate`` skips windows whose shape the gate does not match (verdicts remembered per
   shape). The detector's pattern runs over each remaining window with ``pos``/``endpos``
   (so lookbehinds still see the real text before the window, while a match never runs
   past the window: long values need a larger ``window``). A match counts only if it
   overlaps one of that detector's anchor hits, its value is not in ``exclude``, its
   validator (if any) accepts it and, for a detector with ``columns``, it is a whole field
   under one of those headers (``columns.py``). With a named group ``value`` the group is
   the value and its span is the finding's span. A ``starts_at_anchor`` detector skips
   the windows: its pattern is tried once with ``match`` at each hit's start (a region of
   merged hits is still searched whole), which for a prefix token is one attempt instead
   of one per position.
4. Map back. A finding runs from the original index of its first normalised character to
   one past the original index of its last, so a value hidden with zero-width characters
   is covered together with them. Offsets are Python ``str`` indices, end exclusive.
5. Resolve overlaps. Findings are sorted by (start, longest first, highest confidence,
   detector id) and kept greedily; a finding that overlaps an already kept one is dropped.
   The same input therefore always yields the same output, and on an identical span the
   more confident detector wins, ties broken by the alphabetically first id.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

import regex

from relay.guardrail.columns import Tables
from relay.guardrail.detectors import Detector, DetectorSet


@dataclass(frozen=True, slots=True)
class Finding:
    detector: str
    category: str
    start: int
    end: int


# A candidate is (start, -length, -confidence, detector id, end, detector index): plain
# tuples sort in exactly the overlap-resolution order with no key function.
_Candidate = tuple[int, int, float, str, int, int]

_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def normalise(text: str) -> tuple[str, list[int] | None]:
    """NFKC per character, format characters removed; returns (text, index map or None).

    ``None`` means the identity map (ASCII fast path).
    """
    if text.isascii():
        return text, None
    out: list[str] = []
    index: list[int] = []
    pos = 0
    # ASCII runs are copied as slices (they normalise to themselves); only the non-ASCII
    # characters take the per-character path.
    for match in _NON_ASCII.finditer(text):
        i = match.start()
        if i > pos:
            out.append(text[pos:i])
            index.extend(range(pos, i))
        pos = i + 1
        ch = text[i]
        if unicodedata.category(ch) == "Cf":
            continue
        norm = unicodedata.normalize("NFKC", ch)
        for piece in norm:
            if unicodedata.category(piece) != "Cf":
                out.append(piece)
                index.append(i)
    if pos < len(text):
        out.append(text[pos:])
        index.extend(range(pos, len(text)))
    return "".join(out), index


def _lower_same_length(text: str) -> str:
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    # A few characters (e.g. 'İ') lowercase to two; keep those as they are so offsets align.
    return "".join(lc if len(lc := ch.lower()) == 1 else ch for ch in text)


def _windows(
    hits: list[tuple[int, int]], before: int, after: int, size: int
) -> list[tuple[int, int]]:
    """Merge hits widened by ``before`` and ``after``; ``hits`` must be sorted."""
    merged: list[tuple[int, int]] = []
    append = merged.append
    cur_lo = cur_hi = -1
    for start, end in hits:
        lo = start - before
        if lo < 0:
            lo = 0
        hi = end + after
        if hi > size:
            hi = size
        if cur_hi >= 0 and lo <= cur_hi:
            if hi > cur_hi:
                cur_hi = hi
        else:
            if cur_hi >= 0:
                append((cur_lo, cur_hi))
            cur_lo, cur_hi = lo, hi
    if cur_hi >= 0:
        append((cur_lo, cur_hi))
    return merged


def _touches_anchor(
    starts: list[int], hits: list[tuple[int, int]], longest: int, lo: int, hi: int
) -> bool:
    # Hits are sorted by start and no hit is longer than ``longest``, so walking back from
    # the last hit starting before ``hi`` can stop once a start is ``longest`` before ``lo``.
    j = bisect_left(starts, hi) - 1
    while j >= 0 and starts[j] + longest > lo:
        if hits[j][1] > lo:
            return True
        j -= 1
    return False


class _Hits:
    """One sorted hit list with its start offsets, longest hit and widened windows."""

    __slots__ = ("hits", "longest", "shapes", "starts", "windows")

    def __init__(self, hits: list[tuple[int, int]]) -> None:
        self.hits = sorted(hits)
        self.starts: list[int] = []  # filled by touches() on first use
        self.longest = 0
        self.windows: dict[tuple[int, int], list[tuple[int, int]]] = {}
        self.shapes: dict[int, list[bytes]] = {}  # by id() of a windows list above

    def windows_for(self, det: Detector, size: int) -> list[tuple[int, int]]:
        """The merged windows of ``det``'s size around these hits (shared, do not change)."""
        before = det.window if det.window_before is None else det.window_before
        key = (before, det.window)
        windows = self.windows.get(key)
        if windows is None:
            windows = self.windows[key] = _windows(self.hits, before, det.window, size)
        return windows

    def from_starts(
        self, det: Detector, merged: set[tuple[int, int]], size: int
    ) -> tuple[list[tuple[int, int]], list[bool]]:
        """For a ``starts_at_anchor`` detector: a window from each hit's start to ``after``
        past its end, and whether the hit is a single one (a region of ``merged`` hits is
        searched whole: a value may start at any of them)."""
        after = det.window
        windows = [(s, e + after if e + after < size else size) for s, e in self.hits]
        return windows, [hit not in merged for hit in self.hits]

    def shapes_of(self, windows: list[tuple[int, int]], shape: bytes) -> list[bytes]:
        """Each window's slice of the shape view, cut once for every gated detector."""
        shapes = self.shapes.get(id(windows))
        if shapes is None:
            shapes = self.shapes[id(windows)] = [shape[lo:hi] for lo, hi in windows]
        return shapes

    def touches(self, lo: int, hi: int) -> bool:
        """Whether [lo, hi) overlaps one of the hits."""
        if not self.starts:
            self.starts = [s for s, _ in self.hits]
            self.longest = max(e - s for s, e in self.hits)
        return _touches_anchor(self.starts, self.hits, self.longest, lo, hi)


def _gated(
    gates: list[re.Pattern[bytes]], verdicts: dict[bytes, tuple[int, ...]],
    windows: list[tuple[int, int]], shapes: list[bytes],
) -> list[list[tuple[int, int]]]:
    """Per gate, the windows whose shape it matches. The gates share these windows, so one
    walk serves them all; which gates pass is remembered per shape."""
    kept: list[list[tuple[int, int]]] = [[] for _ in gates]
    for window, shape in zip(windows, shapes, strict=True):
        passing = verdicts.get(shape)
        if passing is None:
            passing = verdicts[shape] = tuple(
                i for i, gate in enumerate(gates) if gate.search(shape) is not None
            )
        for i in passing:
            kept[i].append(window)
    return kept


def _confirm(
    det: Detector, det_index: int, text: str, prepared: _Hits,
    windows: list[tuple[int, int]], found: list[_Candidate], joined: bool,
    single: list[bool] | None = None,
) -> None:
    """Run ``det``'s pattern over each window and append the matches it accepts.

    With ``single`` (a ``starts_at_anchor`` detector), window ``i`` starts at a hit and,
    where ``single[i]``, a value can only start right there: one anchored ``match``
    replaces the scan of every later position.
    """
    touches = prepared.touches
    tables = Tables(text) if det.columns else None
    has_value = "value" in det.pattern.groupindex
    exclude, validator = det.exclude, det.validator
    neg_confidence, ident = -det.confidence, det.id
    finditer, match_at = det.pattern.finditer, det.pattern.match
    for i, (lo, hi) in enumerate(windows):
        at_hit = single is not None and single[i]
        if at_hit:
            only = match_at(text, lo, hi)
            if only is None:
                continue
            matches: Iterable[regex.Match[str]] = (only,)
        else:
            matches = finditer(text, lo, hi)
        for match in matches:
            m_start, m_end = match.span()
            # The NUL sits one character inside each separator: a match that holds
            # any separator character has it within one character of its span.
            if joined and text.find("\x00", max(m_start - 1, 0), m_end + 1) >= 0:
                raise _Crossed
            # A non-empty match made at a hit's start overlaps that hit.
            if not (at_hit and m_end > m_start) and not touches(m_start, m_end):
                continue
            start, end = match.span("value") if has_value else (m_start, m_end)
            if start < 0 or start >= end:
                continue
            if exclude or validator is not None:
                value = text[start:end]
                if value in exclude:
                    continue
                if validator is not None and not validator(value):
                    continue
            if tables is not None and tables.column_of(start, end) not in det.columns:
                continue
            found.append((start, start - end, neg_confidence, ident, end, det_index))


def _resolve(candidates: list[_Candidate]) -> list[_Candidate]:
    candidates.sort()
    kept: list[_Candidate] = []
    kept_end = -1
    for cand in candidates:
        if cand[0] < kept_end:
            continue
        kept.append(cand)
        kept_end = cand[4]
    return kept


class _Crossed(Exception):
    """A pattern matched across the separator of a joined scan (see scan_many)."""


def _candidates(norm: str, detectors: DetectorSet, joined: bool) -> list[_Candidate]:
    """Resolved candidates over normalised text; with ``joined``, raise _Crossed when any
    pattern match spans a separator."""
    merged: set[tuple[int, int]] = set()
    hits = detectors.anchor_hits(_lower_same_length(norm), merged)
    view, shape = detectors.views(norm)
    detectors.prefilter_hits(view, shape, hits)
    if not hits:
        return []
    # Detectors sharing one hit list (e.g. every detector of one prefilter) share its
    # sorting and, per window size, its merged windows.
    prepared: dict[int, _Hits] = {}
    candidates: list[_Candidate] = []
    # Per shared windows list: its hits, the windows, and the gated detectors with gates.
    gated: dict[int, tuple[_Hits, list[tuple[int, int]], list[int], list[re.Pattern[bytes]]]] = {}
    all_detectors = detectors.detectors
    for det_index, det_hits in hits.items():
        shared = prepared.get(id(det_hits))
        if shared is None:
            shared = prepared[id(det_hits)] = _Hits(det_hits)
        det = all_detectors[det_index]
        if det.starts_at_anchor:
            windows, single = shared.from_starts(det, merged, len(norm))
            _confirm(det, det_index, norm, shared, windows, candidates, joined, single)
            continue
        windows = shared.windows_for(det, len(norm))
        if det.gate is None:
            _confirm(det, det_index, norm, shared, windows, candidates, joined)
        else:
            group = gated.setdefault(id(windows), (shared, windows, [], []))
            group[2].append(det_index)
            group[3].append(det.gate)
    # Gated detectors sharing windows (every digit-run detector) are gated in one walk.
    for shared, windows, members, gates in gated.values():
        kept = _gated(gates, detectors.gate_verdicts(members), windows,
                      shared.shapes_of(windows, shape))
        for det_index, det_windows in zip(members, kept, strict=True):
            _confirm(all_detectors[det_index], det_index, norm, shared, det_windows,
                     candidates, joined)
    return _resolve(candidates)


def scan(text: str, detectors: DetectorSet) -> list[Finding]:
    """Find every detector's values in ``text``; offsets index the original ``text``."""
    norm, index = normalise(text)
    if not norm:
        return []
    findings: list[Finding] = []
    all_detectors = detectors.detectors
    for start, _, _, _, end, det_index in _candidates(norm, detectors, False):
        det = all_detectors[det_index]
        if index is not None:
            start, end = index[start], index[end - 1] + 1
        findings.append(Finding(det.id, det.category, start, end))
    return findings


# Joins the texts of one scan_many call: a NUL no pattern class is meant to cross, between
# newlines so that ``.`` and negated classes stop too. Lookarounds at a text's edge see a
# newline, which every detector treats like the start or end of the text.
_SEPARATOR = "\n\x00\n"


def scan_many(texts: list[str], detectors: DetectorSet) -> list[list[Finding]]:
    """``[scan(t) for t in texts]`` in one pass over the joined texts.

    Short texts (the messages of one request) cost mostly per-call overhead — one
    automaton walk and one pass per prefilter each — so one joined pass is several times
    cheaper. A value cannot span two texts: a pattern match that spans a separator makes
    the call fall back to scanning each text on its own, as does a text holding NUL.
    """
    if len(texts) < 2 or any("\x00" in t for t in texts):
        return [scan(t, detectors) for t in texts]
    joined = _SEPARATOR.join(texts)
    norm, index = normalise(joined)
    try:
        candidates = _candidates(norm, detectors, True)
    except _Crossed:
        return [scan(t, detectors) for t in texts]
    starts: list[int] = []
    offset = 0
    for text in texts:
        starts.append(offset)
        offset += len(text) + len(_SEPARATOR)
    out: list[list[Finding]] = [[] for _ in texts]
    all_detectors = detectors.detectors
    for start, _, _, _, end, det_index in candidates:
        det = all_detectors[det_index]
        if index is not None:
            start, end = index[start], index[end - 1] + 1
        which = bisect_right(starts, start) - 1
        base = starts[which]
        out[which].append(Finding(det.id, det.category, start - base, end - base))
    return out
