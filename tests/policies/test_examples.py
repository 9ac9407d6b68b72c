"""Every shipped detector's own examples, run through the shipped detector set."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from relay.guardrail.detectors import (
    DEFAULT_DIRECTORY,
    Detector,
    DetectorError,
    DetectorSet,
    default_detector_set,
    load_detectors,
)
from relay.guardrail.scan import scan

DETECTORS = load_detectors()
POSITIVES = [
    pytest.param(d, text, id=f"{d.id}-pos{i}")
    for d in DETECTORS
    for i, text in enumerate(d.examples_positive)
]
NEGATIVES = [
    pytest.param(d, text, id=f"{d.id}-neg{i}")
    for d in DETECTORS
    for i, text in enumerate(d.examples_negative)
]


@pytest.mark.parametrize(("detector", "text"), POSITIVES)
def test_positive_example_is_found(detector: Detector, text: str) -> None:
    findings = scan(text, default_detector_set())
    mine = [f for f in findings if f.detector == detector.id]
    assert mine, f"{detector.id} missed {text!r}; got {findings}"
    for finding in mine:
        assert 0 <= finding.start < finding.end <= len(text)
        assert finding.category == detector.category


@pytest.mark.parametrize(("detector", "text"), NEGATIVES)
def test_negative_example_is_not_found(detector: Detector, text: str) -> None:
    findings = scan(text, default_detector_set())
    assert not [f for f in findings if f.detector == detector.id], findings


@pytest.mark.parametrize("detector", DETECTORS, ids=[d.id for d in DETECTORS])
def test_detector_is_alone_sufficient_for_its_positives(detector: Detector) -> None:
    # Examples must not depend on another detector losing an overlap.
    alone = DetectorSet([detector])
    for text in detector.examples_positive:
        assert scan(text, alone), f"{detector.id} alone missed {text!r}"


STARTING_AT_ANCHOR = [d for d in DETECTORS if d.starts_at_anchor]
ALL_EXAMPLES = [t for d in DETECTORS for t in (*d.examples_positive, *d.examples_negative)]


@pytest.mark.parametrize("detector", STARTING_AT_ANCHOR, ids=[d.id for d in STARTING_AT_ANCHOR])
def test_starts_at_anchor_finds_what_a_search_of_the_windows_finds(detector: Detector) -> None:
    # The declaration is a promise about the pattern; a search of whole windows is the
    # reference. Every shipped example (of every detector) is the evidence.
    declared = DetectorSet([detector])
    searched = DetectorSet([dataclasses.replace(detector, starts_at_anchor=False)])
    for text in ALL_EXAMPLES:
        assert scan(text, declared) == scan(text, searched), (detector.id, text)


def test_shipped_directory_loads_with_unique_ids_and_examples() -> None:
    ids = [d.id for d in DETECTORS]
    assert len(ids) == len(set(ids))
    assert {d.category for d in DETECTORS} == {"pii", "secret"}
    for d in DETECTORS:
        assert d.examples_positive and d.examples_negative, d.id
        assert d.source.is_relative_to(DEFAULT_DIRECTORY)
    assert default_detector_set() is default_detector_set()
    assert len(default_detector_set()) == len(DETECTORS)


GOOD = """
[[detector]]
id = "demo_token"
category = "secret"
anchors = ["demo_"]
pattern = 'demo_[a-z]{8}'
[detector.examples]
positive = ["demo_abcdefgh"]
negative = ["demo_x"]
"""


def _write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def test_minimal_file_loads_with_defaults(tmp_path: Path) -> None:
    _write(tmp_path, "good.toml", GOOD)
    (det,) = load_detectors(tmp_path)
    assert det.window == 256 and det.validator is None and det.confidence == 0.5
    assert det.exclude == frozenset()


def test_window_may_differ_before_and_after(tmp_path: Path) -> None:
    sided = GOOD.replace('category = "secret"', 'category = "secret"\nwindow = [4, 64]')
    _write(tmp_path, "w.toml", sided)
    (det,) = load_detectors(tmp_path)
    assert (det.window_before, det.window) == (4, 64)


def test_prefilter_replaces_anchors(tmp_path: Path) -> None:
    _write(tmp_path, "pf.toml", GOOD.replace('anchors = ["demo_"]', "prefilter = 'demo_'"))
    (det,) = load_detectors(tmp_path)
    assert det.anchors == () and [p.pattern for p in det.prefilter] == ["demo_"]
    (finding,) = scan("x demo_abcdefgh y", DetectorSet([det]))
    assert (finding.start, finding.end) == (2, 15)


@pytest.mark.parametrize(
    ("old", "new", "ident", "field"),
    [
        ('category = "secret"', 'category = "secret"\ncolour = "red"', "demo_token", "colour"),
        ('category = "secret"', 'category = "secret"\nvalidator = "nope"', "demo_token",
         "validator"),
        ("pattern = 'demo_[a-z]{8}'", "pattern = 'demo_[a-z'", "demo_token", "pattern"),
        ('anchors = ["demo_"]', "anchors = []", "demo_token", "anchors"),
        ('category = "secret"', 'category = "phi"', "demo_token", "category"),
        ('category = "secret"', 'category = "secret"\nconfidence = 2', "demo_token",
         "confidence"),
        ('positive = ["demo_abcdefgh"]', 'positive = ["demo_abcdefgh"]\nmaybe = []',
         "demo_token", "examples.maybe"),
        ('id = "demo_token"\n', "", "#0", "id"),
        ('anchors = ["demo_"]', "prefilter = 'demo_[a-z'", "demo_token", "prefilter"),
        ('anchors = ["demo_"]', "prefilter = 'x*'", "demo_token", "prefilter"),
        ('anchors = ["demo_"]', "prefilter = 3", "demo_token", "prefilter"),
        ('anchors = ["demo_"]', "prefilter = []", "demo_token", "prefilter"),
        ('category = "secret"', 'category = "secret"\nwindow = [1, 2, 3]', "demo_token",
         "window"),
        ('category = "secret"', 'category = "secret"\nwindow = [-1, 2]', "demo_token",
         "window"),
        ('category = "secret"', 'category = "secret"\nwindow = true', "demo_token", "window"),
        ('anchors = ["demo_"]', "prefilter = ['demo_', 'd\u00e9mo']", "demo_token", "prefilter"),
        ('anchors = ["demo_"]', "prefilter = 'demo_'\nprefilter_view = 'hex'", "demo_token",
         "prefilter_view"),
        ('category = "secret"', 'category = "secret"\nprefilter_view = "shape"', "demo_token",
         "prefilter_view"),
        ('anchors = ["demo_"]', "", "demo_token", "anchors"),
        ('category = "secret"', 'category = "secret"\nstarts_at_anchor = 1', "demo_token",
         "starts_at_anchor"),
    ],
)  # fmt: skip
def test_loader_rejects_bad_field(
    tmp_path: Path, old: str, new: str, ident: str, field: str
) -> None:
    path = _write(tmp_path, "bad.toml", GOOD.replace(old, new))
    with pytest.raises(DetectorError) as info:
        load_detectors(tmp_path)
    message = str(info.value)
    assert str(path) in message
    assert f"detector {ident}:" in message
    assert f"field {field}:" in message


def test_loader_rejects_duplicate_id_across_files(tmp_path: Path) -> None:
    _write(tmp_path, "a.toml", GOOD)
    second = _write(tmp_path, "b.toml", GOOD)
    with pytest.raises(DetectorError) as info:
        load_detectors(tmp_path)
    message = str(info.value)
    assert str(second) in message and "detector demo_token:" in message
    assert "field id:" in message and "duplicate" in message


def test_loader_reads_subdirectories_in_sorted_order(tmp_path: Path) -> None:
    (tmp_path / "z").mkdir()
    (tmp_path / "a").mkdir()
    _write(tmp_path / "z", "one.toml", GOOD)
    _write(tmp_path / "a", "two.toml", GOOD.replace("demo_token", "alpha_token"))
    assert [d.id for d in load_detectors(tmp_path)] == ["alpha_token", "demo_token"]


def test_loader_rejects_invalid_toml(tmp_path: Path) -> None:
    path = _write(tmp_path, "broken.toml", "[[detector]\nid = 1")
    with pytest.raises(DetectorError, match="invalid TOML") as info:
        load_detectors(tmp_path)
    assert str(path) in str(info.value)


def test_gate_is_parsed_and_rejects_bad_values(tmp_path: Path) -> None:
    gated = GOOD.replace('category = "secret"', "category = \"secret\"\ngate = 'demo_'")
    _write(tmp_path, "g.toml", gated)
    (det,) = load_detectors(tmp_path)
    assert det.gate is not None and det.gate.pattern == b"demo_"
    for bad in ("gate = ''", "gate = 'd(e'", "gate = 3", "gate = 'd\u00e9mo'"):
        bad_file = GOOD.replace('category = "secret"', f'category = "secret"\n{bad}')
        _write(tmp_path, "g.toml", bad_file)
        with pytest.raises(DetectorError, match="field gate"):
            load_detectors(tmp_path)


def test_columns_are_normalised_and_need_a_letter_or_digit(tmp_path: Path) -> None:
    named = GOOD.replace('category = "secret"', 'category = "secret"\ncolumns = ["SSN #", "x_Y"]')
    _write(tmp_path, "c.toml", named)
    (det,) = load_detectors(tmp_path)
    assert det.columns == frozenset({"ssn", "x y"})
    nameless = GOOD.replace('category = "secret"', 'category = "secret"\ncolumns = ["--"]')
    _write(tmp_path, "c.toml", nameless)
    with pytest.raises(DetectorError, match="field columns"):
        load_detectors(tmp_path)
