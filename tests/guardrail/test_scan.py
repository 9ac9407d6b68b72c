from __future__ import annotations

import re
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path

import pytest
import regex

from relay.guardrail.detectors import (
    Detector,
    DetectorSet,
    _leading_literal,
    default_detector_set,
)
from relay.guardrail.scan import Finding, normalise, scan, scan_many

ZWSP, ZWJ, ZWNJ, BOM, SHY = "\u200b", "\u200d", "\u200c", "\ufeff", "\u00ad"
GH_TOKEN = "ghp_fogoEmvnEN5N1aE6PwZPf1Qh6yYTWmE4lBYO"


def make(
    ident: str,
    anchors: tuple[str, ...],
    pattern: str,
    *,
    confidence: float = 0.5,
    window: int = 256,
    exclude: frozenset[str] = frozenset(),
) -> Detector:
    return Detector(
        id=ident, category="secret", anchors=anchors, pattern=regex.compile(pattern),
        validator=None, confidence=confidence, exclude=exclude, window=window,
        examples_positive=(), examples_negative=(), source=Path("test.toml"),
    )  # fmt: skip


def found(text: str, detectors: DetectorSet | None = None) -> list[tuple[str, str]]:
    """(detector, original substring) per finding."""
    results = scan(text, detectors or default_detector_set())
    return [(f.detector, text[f.start : f.end]) for f in results]


def test_ascii_spans_are_exact() -> None:
    text = "write to alice@example.com or call +44 20 7946 0958."
    assert found(text) == [
        ("email_address", "alice@example.com"),
        ("phone_international", "+44 20 7946 0958"),
    ]


def test_zero_width_chars_inside_an_email_are_covered() -> None:
    text = f"mail a{ZWSP}li{ZWJ}ce@example.com now"
    (finding,) = scan(text, default_detector_set())
    assert finding == Finding("email_address", "pii", 5, 5 + len("alice@example.com") + 2)
    assert text[finding.start] == "a" and text[finding.end - 1] == "m"


def test_zero_width_and_soft_hyphen_inside_a_key_are_covered() -> None:
    hidden = GH_TOKEN[:6] + ZWNJ + GH_TOKEN[6:20] + SHY + GH_TOKEN[20:] + BOM
    text = f"token={hidden}!"
    assert found(text) == [("github_token", hidden[:-1])]


def test_fullwidth_digits_and_letters_are_found() -> None:
    card = "４１１１ １１１１ １１１１ １１１１"  # noqa: RUF001 (deliberate confusables)
    key = "ＡＫＩＡＺ７Ｑ３ＫＸＷ２Ｍ４Ｈ５ＰＬＴＢ"  # noqa: RUF001 (deliberate confusables)
    text = f"card {card} and key {key}"
    assert found(text) == [("payment_card_number", card), ("aws_access_key_id", key)]


def test_nfkc_expansion_maps_back_to_the_ligature() -> None:
    text = "\ufb01nance@example.com"  # the 'fi' ligature expands to two characters
    assert found(text) == [("email_address", text)]


def test_lowercase_that_changes_length_keeps_offsets() -> None:
    text = "İİ İ alice@example.com"  # 'İ'.lower() is two characters
    assert found(text) == [("email_address", "alice@example.com")]


def test_plain_prose_has_no_findings() -> None:
    prose = (
        "The quick brown fox jumps over the lazy dog. In 2024 we shipped 3 releases; "
        "see section 4.2 of the design, or ask the team at the standup on Monday at 10:30. "
        "It is 1.5 times faster, and std::vector is fine. Total: 1,234,567 items (99.9%)."
    )
    assert scan(prose, default_detector_set()) == []
    assert scan("", default_detector_set()) == []


def test_scan_is_deterministic() -> None:
    text = f"key AKIAZ7Q3KXW2M4H5PLTB, card 4111111111111111, {GH_TOKEN}, bob@example.org"
    first = scan(text, default_detector_set())
    assert first == scan(text, default_detector_set())
    assert [f.start for f in first] == sorted(f.start for f in first)


def test_same_span_higher_confidence_then_alphabetical_id_wins() -> None:
    text = "x tok_abcdefgh y"
    low = make("b_low", ("tok_",), r"tok_[a-z]{8}", confidence=0.4)
    high = make("z_high", ("tok_",), r"tok_[a-z]{8}", confidence=0.9)
    assert found(text, DetectorSet([low, high])) == [("z_high", "tok_abcdefgh")]
    assert found(text, DetectorSet([high, low])) == [("z_high", "tok_abcdefgh")]
    first = make("a_first", ("tok_",), r"tok_[a-z]{8}", confidence=0.9)
    assert found(text, DetectorSet([high, first])) == [("a_first", "tok_abcdefgh")]


def test_earlier_start_then_longer_span_wins_overlaps() -> None:
    short = make("short", ("tok_",), r"tok_[a-z]{4}", confidence=1.0)
    long = make("long", ("tok_",), r"tok_[a-z]{8}", confidence=0.1)
    late = make("late", ("abc",), r"abcdefgh z", confidence=1.0)
    text = "tok_abcdefgh z"
    assert found(text, DetectorSet([short, long, late])) == [("long", "tok_abcdefgh")]


def test_non_overlapping_findings_are_all_kept() -> None:
    det = make("tok", ("tok_",), r"tok_[a-z]{4}")
    assert found("tok_abcd tok_efgh", DetectorSet([det])) == [
        ("tok", "tok_abcd"),
        ("tok", "tok_efgh"),
    ]


def test_lookbehind_sees_text_before_the_window() -> None:
    # The window starts at index 2; the lookbehind still sees the 'x' at index 0.
    det = make("tok", ("tok_",), r"(?<!x.{5})tok_[a-z]{4}", window=4)
    assert found("x12345tok_abcd", DetectorSet([det])) == []
    assert found("y12345tok_abcd", DetectorSet([det])) == [("tok", "tok_abcd")]


def test_window_limits_how_far_a_match_extends() -> None:
    det = make("tok", ("tok_",), r"tok_[a-z]+", window=4)
    assert found("tok_abcdefghij", DetectorSet([det])) == [("tok", "tok_abcd")]


def test_match_must_overlap_an_anchor_hit() -> None:
    away = make("away", ("key",), r"\d{4}")
    assert found("key 1234", DetectorSet([away])) == []


def test_value_group_is_the_span_and_exclude_applies_to_it() -> None:
    det = make("labelled", ("key",), r"key=(?P<value>\d{4})", exclude=frozenset({"0000"}))
    assert found("key=1234 key=0000", DetectorSet([det])) == [("labelled", "1234")]


def test_anchor_matching_is_case_insensitive() -> None:
    det = make("tok", ("TOK_",), r"(?i:tok_)[a-z]{4}")
    assert found("Tok_abcd", DetectorSet([det])) == [("tok", "Tok_abcd")]


def test_empty_detector_set_finds_nothing() -> None:
    assert scan("alice@example.com", DetectorSet([])) == []


def test_normalise_map() -> None:
    assert normalise("plain") == ("plain", None)
    text, index = normalise(f"a{ZWSP}\uff42\ufb01")
    assert text == "abfi"
    assert index == [0, 2, 3, 3]


def test_detector_set_is_shared_across_threads() -> None:
    text = f"{GH_TOKEN} alice@example.com 4111111111111111 " * 20
    expected = scan(text, default_detector_set())
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: scan(text, default_detector_set()), range(16)))
    assert all(r == expected for r in results)
    assert len(expected) == 60


def test_finding_is_frozen() -> None:
    finding = Finding("d", "pii", 0, 1)
    with pytest.raises(AttributeError):
        finding.start = 2  # type: ignore[misc]


TRICKY = [
    "e\u0301\u0301\u0301 alice@example.com",
    "👩‍👩‍👧‍👦 family 4111111111111111 👍🏽",
    "\U0001d400\U0001d401 bold math \U0001d7ce\U0001d7cf",  # math letters / digits, NFKC to ASCII
    "שלום alice@example.com עולם \u202eevil\u202c",
    "مرحبا ٠١٢٣٤٥٦٧٨٩ 536-22-1234",
    "\u0301\u200b\u200b\ufeff",
    "\u3000\uff10\uff11\u2460\u2461 ＋４４ ２０ ７９４６ ０９５８",  # noqa: RUF001 (deliberate confusables)
    "ﷺ ﷻ ﬀﬃ ㍿ ㈱",
    "a\u200bb\u200bc@\u200bd.\u200bcom",
    "İıŞşĞğ KEY AKIA\u00adZ7Q3KXW2M4H5PLTB",
    "\U0010ffff\U000e0001\U000e0041 tags",
    "x" * 1000 + "@" + "y" * 1000,
    "1" * 500,
    ":" * 300 + "::1" + "-" * 300,
]


@pytest.mark.parametrize("text", TRICKY, ids=range(len(TRICKY)))
def test_tricky_unicode_never_crashes_and_spans_are_in_bounds(text: str) -> None:
    findings = scan(text, default_detector_set())
    for f in findings:
        assert 0 <= f.start < f.end <= len(text)
    for a, b in pairwise(findings):
        assert a.end <= b.start


def test_tricky_strings_still_find_what_they_hide() -> None:
    assert ("email_address", "alice@example.com") in found(TRICKY[0])
    assert ("payment_card_number", "4111111111111111") in found(TRICKY[1])
    assert ("us_ssn", "536-22-1234") in found(TRICKY[4])
    assert ("aws_access_key_id", "AKIA\u00adZ7Q3KXW2M4H5PLTB") in found(TRICKY[9])
    assert found(TRICKY[8]) == [("email_address", TRICKY[8])]


def test_anchor_hits_merge_touching_hits_into_regions() -> None:
    digits = make("digits", tuple("0123456789"), r"\d+")
    word = make("word", ("key",), r"key")
    detectors = DetectorSet([digits, word])
    assert detectors.anchor_hits("a 123 b 45 key") == {0: [(2, 5), (8, 10)], 1: [(11, 14)]}
    assert found("a 123 b 45", detectors) == [("digits", "123"), ("digits", "45")]


def test_prefilter_regions_keep_offsets_right() -> None:
    text = "x" * 50 + " card 4111 1111 1111 1111, ssn 536-22-1234 and ip 203.0.113.42."
    got = found(text)
    assert got == [
        ("payment_card_number", "4111 1111 1111 1111"),
        ("us_ssn", "536-22-1234"),
        ("ipv4_address", "203.0.113.42"),
    ]


def test_zero_width_chars_inside_a_card_number_are_found() -> None:
    hidden = f"4111{ZWSP}1111{ZWJ}1111{BOM}1111"
    text = f"pay with {hidden} today"
    (finding,) = scan(text, default_detector_set())
    assert finding.detector == "payment_card_number"
    assert text[finding.start : finding.end] == hidden


def test_fullwidth_digits_reach_the_digit_prefilter() -> None:
    text = "ssn ５３６-２２-１２３４ end"  # noqa: RUF001
    assert [d for d, _ in found(text)] == ["us_ssn"]


def test_csv_commas_do_not_hide_numbers() -> None:
    text = "a@example.com,645-375-1763,4711 7828 5674 6461,188-20-3523,10"
    assert [d for d, _ in found(text)] == [
        "email_address", "phone_nanp", "payment_card_number", "us_ssn"
    ]


def test_prefilter_detector_without_anchors() -> None:
    det = Detector(
        id="digits", category="pii", anchors=(), pattern=regex.compile(r"\d{6}"),
        validator=None, confidence=0.5, exclude=frozenset(), window=4,
        examples_positive=(), examples_negative=(), source=Path("t.toml"),
        prefilter=(re.compile(r"[0-9]{6}"),),
    )  # fmt: skip
    text = "id 123456 and 654321"
    results = scan(text, DetectorSet([det]))
    assert [text[f.start : f.end] for f in results] == ["123456", "654321"]


def _prefiltered(ident: str, pattern: str, window: int, anchors: tuple[str, ...] = ()) -> Detector:
    return Detector(
        id=ident, category="pii", anchors=anchors, pattern=regex.compile(pattern),
        validator=None, confidence=0.5, exclude=frozenset(), window=window,
        examples_positive=(), examples_negative=(), source=Path("t.toml"),
        prefilter=(re.compile(r"[0-9]{6}"),),
    )  # fmt: skip


@pytest.mark.parametrize("narrow_first", [True, False])
def test_shared_prefilter_keeps_each_detectors_own_window(narrow_first: bool) -> None:
    # Both detectors share one prefilter hit list; each must still see only its own window.
    narrow = _prefiltered("narrow", r"\d+ ?x?", 0)
    wide = _prefiltered("wide", r"\d+ ?x?y?", 2)
    text = "ab 123456 xyz"
    assert found(text, DetectorSet([narrow])) == [("narrow", "123456")]
    assert found(text, DetectorSet([wide])) == [("wide", "123456 x")]
    both = [narrow, wide] if narrow_first else [wide, narrow]
    assert found(text, DetectorSet(both)) == [("wide", "123456 x")]


def test_window_before_and_after_a_hit_are_each_its_own() -> None:
    # The value must overlap the anchor "key"; what the pattern may see around it is
    # bounded by window_before on the left and window on the right.
    def det(before: int | None, after: int) -> Detector:
        return Detector(
            id="kv", category="secret", anchors=("key",), pattern=regex.compile(r"\w*key\w*"),
            validator=None, confidence=0.5, exclude=frozenset(), window=after,
            window_before=before, examples_positive=(), examples_negative=(),
            source=Path("t.toml"),
        )  # fmt: skip

    text = "abckeydef"
    assert found(text, DetectorSet([det(None, 3)])) == [("kv", "abckeydef")]
    assert found(text, DetectorSet([det(0, 3)])) == [("kv", "keydef")]
    assert found(text, DetectorSet([det(3, 1)])) == [("kv", "abckeyd")]


def _from_anchor(pattern: str, *, starts_at_anchor: bool, window: int = 16) -> Detector:
    return Detector(
        id="tok", category="secret", anchors=("tok_", "tok_tok_"),
        pattern=regex.compile(pattern), validator=None, confidence=0.5,
        exclude=frozenset(), window=window, examples_positive=(), examples_negative=(),
        source=Path("t.toml"), starts_at_anchor=starts_at_anchor,
    )  # fmt: skip


def test_starts_at_anchor_tries_the_pattern_only_where_a_hit_starts() -> None:
    # "\w*tok_\d+" could start anywhere before the anchor: a window search finds the
    # longer value, the declared detector only the one that starts at the hit.
    text = "x abctok_123 y"
    searched = DetectorSet([_from_anchor(r"\w*tok_\d+", starts_at_anchor=False)])
    declared = DetectorSet([_from_anchor(r"\w*tok_\d+", starts_at_anchor=True)])
    assert found(text, searched) == [("tok", "abctok_123")]
    assert found(text, declared) == [("tok", "tok_123")]


def test_starts_at_anchor_runs_window_past_the_hit_and_no_further() -> None:
    text = "tok_" + "9" * 30
    declared = DetectorSet([_from_anchor(r"tok_\d+", starts_at_anchor=True, window=10)])
    assert found(text, declared) == [("tok", "tok_" + "9" * 10)]


def test_starts_at_anchor_searches_a_region_of_merged_hits() -> None:
    # "tok_" hits at 0 and 4 touch and merge into one region [0, 8); a value starting at
    # the second hit must still be found, and one in a later single hit too.
    text = "tok_tok_12 tok_34"
    declared = DetectorSet([_from_anchor(r"(?<!_)tok_\d+|(?<=_)tok_\d+", starts_at_anchor=True)])
    assert found(text, declared) == [("tok", "tok_12"), ("tok", "tok_34")]


def test_starts_at_anchor_in_scan_many_still_stops_at_the_separator() -> None:
    declared = DetectorSet([_from_anchor(r"tok_[\s\S]*", starts_at_anchor=True, window=64)])
    texts = ["a tok_1", "b tok_2"]
    assert scan_many(texts, declared) == [scan(t, declared) for t in texts]


def test_a_gate_keeps_the_pattern_out_of_windows_whose_shape_cannot_match() -> None:
    def det(gate: str | None) -> Detector:
        return Detector(
            id="dashed", category="pii", anchors=(), pattern=regex.compile(r"\d+-\d+"),
            validator=None, confidence=0.5, exclude=frozenset(), window=1,
            examples_positive=(), examples_negative=(), source=Path("t.toml"),
            prefilter=(re.compile(r"0[0-]*0"),), prefilter_view="shape",
            gate=None if gate is None else re.compile(gate.encode()),
        )  # fmt: skip

    text = "a 12-34 b 5678 c 90-12"
    assert found(text, DetectorSet([det(None)])) == [("dashed", "12-34"), ("dashed", "90-12")]
    # A gate that holds for the pattern's values changes nothing ...
    assert found(text, DetectorSet([det("0-0")])) == [("dashed", "12-34"), ("dashed", "90-12")]
    # ... and the pattern really does not run where the gate fails (here: everywhere).
    assert found(text, DetectorSet([det("0000")])) == []


def test_anchor_and_prefilter_hits_of_one_detector_combine() -> None:
    det = _prefiltered("mixed", r"key|\d{6}", 0, anchors=("key",))
    text = "123456 key 654321 key"
    assert found(text, DetectorSet([det])) == [
        ("mixed", "123456"), ("mixed", "key"), ("mixed", "654321"), ("mixed", "key")
    ]  # fmt: skip


def _viewed(view: str, *prefilters: str) -> Detector:
    return Detector(
        id="viewed", category="pii", anchors=(), pattern=regex.compile(r"[A-Z]{2}\d{4}"),
        validator=None, confidence=0.5, exclude=frozenset(), window=4,
        examples_positive=(), examples_negative=(), source=Path("t.toml"),
        prefilter=tuple(re.compile(p) for p in prefilters), prefilter_view=view,
    )  # fmt: skip


def test_shape_view_reads_digits_as_0_and_capitals_as_a() -> None:
    det = _viewed("shape", "AA0000")
    # Non-ASCII characters before the value are one '?' each in the view: offsets hold.
    text = "é€𝄞 XY1234 ab1234 XY12"
    assert found(text, DetectorSet([det])) == [("viewed", "XY1234")]
    # The same prefilter over the text view matches nothing: no literal 'AA0000' here.
    assert found(text, DetectorSet([_viewed("text", "AA0000")])) == []


def test_a_list_of_prefilters_adds_up_their_regions() -> None:
    det = _viewed("text", "AB", "CD")
    assert found("AB1234 CD5678 EF9012", DetectorSet([det])) == [
        ("viewed", "AB1234"), ("viewed", "CD5678")
    ]  # fmt: skip


def test_scan_many_matches_scanning_each_text() -> None:
    texts = [
        "mail a@example.com",
        "card 4111 1111 1111 1111 and ssn 536-22-1234",
        "",
        "key AKIAZ7VQ3LKHM5GX4RTN",
        "ip 203.0.113.42",
    ]
    assert scan_many(texts, default_detector_set()) == [
        scan(t, default_detector_set()) for t in texts
    ]


def test_scan_many_falls_back_when_a_match_runs_into_the_next_text() -> None:
    # A PEM body cut at the end of one text: its pattern swallows the trailing newline
    # of the separator, so the joined pass is refused and each text is scanned alone.
    body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7" * 3
    texts = [f"-----BEGIN PRIVATE KEY-----\n{body}", "the next message"]
    got = scan_many(texts, default_detector_set())
    assert got == [scan(t, default_detector_set()) for t in texts]
    (finding,) = got[0]
    assert finding.end == len(texts[0])


def test_scan_many_with_nul_in_a_text_scans_each_alone() -> None:
    texts = ["a\x00b a@example.com", "c@example.org"]
    got = scan_many(texts, default_detector_set())
    assert [[t[f.start : f.end] for f in fs] for t, fs in zip(texts, got, strict=True)] == [
        ["a@example.com"], ["c@example.org"]
    ]  # fmt: skip


def _normalise_per_character(text: str) -> tuple[str, list[int]]:
    out: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        for piece in unicodedata.normalize("NFKC", ch):
            if unicodedata.category(piece) != "Cf":
                out.append(piece)
                index.append(i)
    return "".join(out), index


@pytest.mark.parametrize("text", TRICKY, ids=range(len(TRICKY)))
def test_normalise_matches_the_per_character_definition(text: str) -> None:
    norm, index = normalise(text)
    if index is None:
        assert text.isascii() and norm == text
    else:
        assert (norm, index) == _normalise_per_character(text)


@pytest.mark.parametrize(
    ("source", "literal"),
    [(rb"0[0 .()+-]{5,}0", b"0"), (b"AA00", b"AA00"), (rb"\+[1-9]", b"+"), (b"AB|CD", b""),
     (b"a*b", b""), (b"(?i)sk", b""), (b"(ab)c", b"")],
)  # fmt: skip
def test_a_prefilter_is_skipped_only_when_its_leading_literal_is_absent(
    source: bytes, literal: bytes
) -> None:
    assert _leading_literal(re.compile(source)) == literal
