"""Hold-back playbooks: pieces in, released text and findings out."""

from __future__ import annotations

import pytest

from relay.guardrail.detectors import default_detector_set
from relay.guardrail.holdback import HoldBack, safe_cut
from relay.guardrail.scan import Finding, scan

DETECTORS = default_detector_set()


def _scan(text: str) -> list[Finding]:
    return scan(text, DETECTORS)


def _play(pieces: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Feed pieces (the last one final); return what each step released and the values
    found, as (detector, value) taken from the released text."""
    hold = HoldBack(_scan)
    released: list[str] = []
    values: list[tuple[str, str]] = []
    for n, piece in enumerate(pieces):
        text, findings = hold.feed(piece, final=n == len(pieces) - 1)
        released.append(text)
        values += [(f.detector, text[f.start : f.end]) for f in findings]
    return released, values


def test_prose_is_released_word_by_word() -> None:
    released, values = _play(["The quick", " brown fox", " jumps", ""])
    assert released == ["The ", "quick brown ", "fox ", "jumps"]
    assert values == []


@pytest.mark.parametrize(
    ("value", "detector"),
    [("jane.roe@example.org", "email_address"), ("AKIAZ7Q3KXW2M4H5PLTB", "aws_access_key_id"),
     ("4111 1111 1111 1111", "payment_card_number")],
)
def test_a_value_split_anywhere_is_never_released_in_part(value: str, detector: str) -> None:
    text = f"please use {value} today."
    start = text.index(value)
    for cut in range(start + 1, start + len(value)):
        released, values = _play([text[:cut], text[cut:], ""])
        assert (detector, value) in values, cut
        # No step released a part of the value without releasing all of it.
        for step in released:
            assert value not in step or step.count(value) == 1
            for size in range(4, len(value)):
                assert not (step.endswith(value[:size]) and value not in step), (cut, step)


def test_numbers_with_spaces_are_held_until_a_word_follows() -> None:
    assert safe_cut("call +1 415 555", 0) == len("call ")
    assert safe_cut("call +1 415 555 0100 now", 0) == len("call ")
    assert safe_cut("call +1 415 555 0100 now ", 0) == len("call +1 415 555 0100 now ")


def test_an_open_private_key_block_is_held() -> None:
    hold = HoldBack(_scan)
    released, _ = hold.feed("here: -----BEGIN RSA PRIVATE KEY-----\nMIIEow")
    assert "BEGIN" not in released


def test_the_hold_is_bounded() -> None:
    hold = HoldBack(_scan, max_hold=100)
    released, _ = hold.feed("1 " * 200)
    assert len(hold.held) <= 100 and released


def _first_value(detector_id: str, example: str) -> tuple[int, int] | None:
    for finding in _scan(example):
        if finding.detector == detector_id:
            return finding.start, finding.end
    return None


CASES = [
    (d.id, d.examples_positive[0]) for d in DETECTORS.detectors if d.examples_positive
]


@pytest.mark.parametrize(("detector", "example"), CASES, ids=[c[0] for c in CASES])
def test_every_detector_survives_every_split_point(detector: str, example: str) -> None:
    """Split each detector's first example at every point inside its value: the value is
    released in one piece, never in part, and still found."""
    span = _first_value(detector, example)
    assert span is not None
    start, end = span
    for cut in range(start + 1, end):
        hold = HoldBack(_scan)
        position, boundaries, found = 0, [], []
        for piece, final in ((example[:cut], False), (example[cut:], False), ("", True)):
            text, findings = hold.feed(piece, final=final)
            found += [(f.detector, position + f.start, position + f.end) for f in findings]
            position += len(text)
            boundaries.append(position)
        assert not any(start < b < end for b in boundaries), (cut, boundaries)
        assert any(d == detector and s <= start and end <= e for d, s, e in found), cut
