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
   side; overlapping windows merge and the detector's pattern runs over each with
   ``pos``/``endpos`` (so lookbehinds still see the real text before the window, while a
   match never runs past the window: long values need a larger ``window``). A match
   counts only if it overlaps one of that detector's anchor hits, its value is not in
   ``exclude``, and its validator (if any) accepts it. With a named group ``value`` the
   group is the value and its span is the finding's span.
4. Map back. A finding runs from the original index of its first normalised character to
   one past the original index of its last, so a value hidden with zero-width characters
   is covered together with them. Offsets are Python ``str`` indices, end exclusive.
5. Resolve overlaps. Findings are sorted by (start, longest first, highest confidence,
   detector id) and kept greedily; a finding that overlaps an already kept one is dropped.
   The same input therefore always yields the same output, and on an identical span the
   more confident detector wins, ties broken by the alphabetically first id.
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_left
from dataclasses import dataclass

from relay.guardrail.detectors import Detector, DetectorSet


@dataclass(frozen=True, slots=True)
class Finding:
    detector: str
    category: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Candidate:
    start: int  # normalised offsets until mapped back
    end: int
    detector: Detector


def normalise(text: str) -> tuple[str, list[int] | None]:
    """NFKC per character, format characters removed; returns (text, index map or None).

    ``None`` means the identity map (ASCII fast path).
    """
    if text.isascii():
        return text, None
    out: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        if ch.isascii():
            out.append(ch)
            index.append(i)
            continue
        if unicodedata.category(ch) == "Cf":
            continue
        norm = unicodedata.normalize("NFKC", ch)
        for piece in norm:
            if unicodedata.category(piece) != "Cf":
                out.append(piece)
                index.append(i)
    return "".join(out), index


def _lower_same_length(text: str) -> str:
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    # A few characters (e.g. 'İ') lowercase to two; keep those as they are so offsets align.
    return "".join(lc if len(lc := ch.lower()) == 1 else ch for ch in text)


def _windows(hits: list[tuple[int, int]], window: int, size: int) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(hits):
        lo, hi = max(0, start - window), min(size, end + window)
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
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


def _confirm(det: Detector, text: str, hits: list[tuple[int, int]]) -> list[_Candidate]:
    hits = sorted(hits)
    starts = [s for s, _ in hits]
    longest = max(e - s for s, e in hits)
    has_value = "value" in det.pattern.groupindex
    found: list[_Candidate] = []
    for lo, hi in _windows(hits, det.window, len(text)):
        for match in det.pattern.finditer(text, pos=lo, endpos=hi):
            if not _touches_anchor(starts, hits, longest, match.start(), match.end()):
                continue
            start, end = match.span("value") if has_value else match.span()
            if start < 0 or start >= end:
                continue
            value = text[start:end]
            if value in det.exclude:
                continue
            if det.validator is not None and not det.validator(value):
                continue
            found.append(_Candidate(start, end, det))
    return found


def _resolve(candidates: list[_Candidate]) -> list[_Candidate]:
    ordered = sorted(
        candidates,
        key=lambda c: (c.start, -(c.end - c.start), -c.detector.confidence, c.detector.id),
    )
    kept: list[_Candidate] = []
    kept_end = -1
    for cand in ordered:
        if cand.start < kept_end:
            continue
        kept.append(cand)
        kept_end = cand.end
    return kept


def scan(text: str, detectors: DetectorSet) -> list[Finding]:
    """Find every detector's values in ``text``; offsets index the original ``text``."""
    norm, index = normalise(text)
    if not norm:
        return []
    hits = detectors.anchor_hits(_lower_same_length(norm))
    detectors.prefilter_hits(norm, hits)
    candidates: list[_Candidate] = []
    for det_index, det_hits in hits.items():
        candidates.extend(_confirm(detectors.detectors[det_index], norm, det_hits))
    findings: list[Finding] = []
    for cand in _resolve(candidates):
        if index is None:
            start, end = cand.start, cand.end
        else:
            start, end = index[cand.start], index[cand.end - 1] + 1
        findings.append(Finding(cand.detector.id, cand.detector.category, start, end))
    return findings
