"""Properties of the scanner, masking and hold-back on arbitrary Unicode (hypothesis)."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from relay.guardrail.detectors import DetectorSet, default_detector_set
from relay.guardrail.holdback import HoldBack
from relay.guardrail.scan import Finding, scan, scan_many

DETECTORS = default_detector_set()
# Arbitrary text, salted with the characters values are made of and with the zero-width
# and fullwidth forms obfuscation uses.
TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(list("0123456789@.-_ :/+=AKIaskxoxbghp\u200b\u200d\ufeff\uff10\uff21")),
    ),
    max_size=300,
)


def _scan(text: str) -> list[Finding]:
    return scan(text, DETECTORS)


def _mask(text: str) -> str:
    for finding in sorted(_scan(text), key=lambda f: -f.start):
        text = text[: finding.start] + f"[{finding.detector.upper()}]" + text[finding.end :]
    return text


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_scan_never_crashes_and_offsets_are_valid(text: str) -> None:
    findings = _scan(text)
    previous_end = 0
    for finding in sorted(findings, key=lambda f: f.start):
        assert 0 <= finding.start < finding.end <= len(text)
        assert finding.start >= previous_end  # overlaps were resolved
        previous_end = finding.end


@settings(max_examples=200, deadline=None)
@given(TEXT)
def test_masking_is_idempotent(text: str) -> None:
    once = _mask(text)
    assert _mask(once) == once


@settings(max_examples=200, deadline=None)
@given(TEXT, st.lists(st.integers(min_value=0, max_value=300), max_size=6))
def test_hold_back_releases_exactly_the_input(text: str, cuts: list[int]) -> None:
    points = sorted({min(c, len(text)) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    hold = HoldBack(_scan)
    released = ""
    for n, piece in enumerate(pieces):
        out, findings = hold.feed(piece, final=n == len(pieces) - 1)
        for finding in findings:
            assert 0 <= finding.start < finding.end <= len(out)
        released += out
    assert released == text
    assert hold.held == ""


@settings(max_examples=200, deadline=None)
@given(st.lists(TEXT, max_size=5))
def test_scan_many_is_scan_of_each_text(texts: list[str]) -> None:
    assert scan_many(texts, DETECTORS) == [_scan(t) for t in texts]


SEARCHED = DetectorSet(
    [dataclasses.replace(d, starts_at_anchor=False) for d in DETECTORS.detectors]
)
# Pieces of real values (every detector's positive examples, cut anywhere) joined by
# arbitrary text: anchors land next to, inside and across other values.
EXAMPLE_PIECES = [t for d in DETECTORS.detectors for t in d.examples_positive]
PIECE = st.builds(
    lambda text, a, b: text[min(a, b) : max(a, b)] if a != b else text,
    st.sampled_from(EXAMPLE_PIECES), st.integers(0, 200), st.integers(0, 200),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(PIECE, TEXT), max_size=6))
def test_starts_at_anchor_agrees_with_searching_every_window(parts: list[str]) -> None:
    text = "".join(parts)
    assert scan(text, DETECTORS) == scan(text, SEARCHED)
