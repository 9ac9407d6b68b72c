"""Load detector files (``policies/detectors/**/*.toml``) and build the anchor automaton.

A detector is data: literal anchors for the Aho-Corasick prefilter, a ``regex`` pattern,
an optional validator by name, and its own positive/negative examples. The loader rejects
anything it does not understand with the file, detector and field at fault.

Fields of a ``[[detector]]`` table:

``id`` (snake_case, unique), ``category`` (``pii`` / ``secret``), ``pattern`` (``regex``
syntax; a named group ``value`` narrows the finding), ``anchors`` (lowercased literals for
the Aho-Corasick pass), ``prefilter`` (optional), ``validator`` (a name from
``validators.VALIDATORS``), ``confidence`` (0-1, default 0.5), ``exclude`` (values never
reported), ``window`` (characters either side of a hit the pattern may see, default 256;
or ``[before, after]`` when the value lies mostly on one side of its anchor), ``gate``
(optional, below), ``columns`` (header names: a match counts only as a whole field of a
delimited table under one of them; see ``columns.py``),
``examples.positive`` / ``examples.negative``.

``prefilter`` replaces ``anchors`` for values with no cheap literal (digit runs, hex groups,
IBAN country codes): a case-sensitive Python ``re`` pattern (ASCII only), or a list of
them whose regions add up, each run once, in C, over one of two byte views of the
normalised text, chosen by ``prefilter_view``:

``text`` (default)
    the text itself as ASCII bytes, each non-ASCII character read as ``?`` (one byte per
    character, so offsets stay the text's own);
``shape``
    the same bytes with every digit read as ``0`` and every uppercase ASCII letter as ``A``,
    so a digit run is ``0[0 .-]*0`` and an IBAN head ``AA00``.

Each match is a candidate region exactly like a merged anchor hit, and detectors with the
same prefilter share one pass. A detector needs ``anchors`` or a ``prefilter`` (or both).
Keep prefilters cheap and loose: a value the prefilter misses is never found. What makes
one cheap is its first item: ``re`` finds a leading literal (``:``, ``+``, ``0`` in the shape
view) with a fast search, while a leading class, group or lookaround is tried at every
position — several times slower. That is what the shape view is for. Frequent single
characters such as digits, ``:`` or ``-`` do not belong in ``anchors``: each hit costs a
Python-level step, and a prefilter region covers a whole run at once.

``gate`` is for detectors that share a busy prefilter (every digit run reaches the card,
SSN, phone and IPv4 detectors): an ASCII ``re`` pattern searched over the shape view of
each window before the detector's pattern runs there; no gate match, no pattern run. It
must hold for every value the pattern can match (write it from the pattern's own shape,
e.g. ``000[- ]00[- ]0000`` for an SSN): a gate that rejects a value loses it. Verdicts are
remembered per window shape, and digit runs come in few shapes, so a gate costs about one
dictionary lookup per window.

``starts_at_anchor = true`` declares that every match of the pattern begins exactly where
one of the detector's anchor hits or prefilter matches begins (a pattern that opens with
its anchor word or prefix: ``ghp_``, ``(?i:\\bpassport)``, an IBAN's ``AA00`` head). The
pattern is then tried once at each hit with ``match`` (``window`` is how far past the hit
it may run; there is no window before) instead of searched at every position of a
window, which for a prefix token is one attempt instead of several hundred. Where touching
hits merged into one region, the region is searched as before. A wrong declaration loses
the values that start elsewhere; the tests compare every such detector with a search of
its windows on its examples.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# re's own pattern parser (stable since 3.11): it tells a prefilter's leading literal.
from re import _constants as re_constants  # type: ignore[attr-defined]
from re import _parser as re_parser  # type: ignore[attr-defined]
from typing import Any

import ahocorasick
import regex

from relay.guardrail.columns import normalise_name
from relay.guardrail.validators import VALIDATORS

DEFAULT_DIRECTORY = Path(__file__).resolve().parents[2] / "policies" / "detectors"
CATEGORIES = frozenset({"pii", "secret"})
DEFAULT_WINDOW = 256
_ALLOWED_KEYS = frozenset(
    {
        "id",
        "category",
        "anchors",
        "prefilter",
        "prefilter_view",
        "pattern",
        "validator",
        "confidence",
        "exclude",
        "window",
        "gate",
        "columns",
        "starts_at_anchor",
        "examples",
    }
)
_ALLOWED_EXAMPLE_KEYS = frozenset({"positive", "negative"})
PREFILTER_VIEWS = ("text", "shape")
GATE_MEMO_ENTRIES = 65_536
# The shape view: digits read 0, uppercase ASCII letters A (see the module docstring).
_SHAPE = bytes.maketrans(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"0" * 10 + b"A" * 26)


class DetectorError(ValueError):
    """A detector file is invalid; the message names file, detector and field."""


@dataclass(frozen=True)
class Detector:
    id: str
    category: str
    anchors: tuple[str, ...]
    pattern: regex.Pattern[str]
    validator: Callable[[str], bool] | None
    confidence: float
    exclude: frozenset[str]
    window: int
    examples_positive: tuple[str, ...]
    examples_negative: tuple[str, ...]
    source: Path
    prefilter: tuple[re.Pattern[str], ...] = ()
    prefilter_view: str = "text"
    # Characters before a hit the pattern may see; None: the same as ``window`` (after).
    window_before: int | None = None
    gate: re.Pattern[bytes] | None = None
    # Header names (normalised) a match must sit under; empty: no column context.
    columns: frozenset[str] = frozenset()
    # Every match begins where an anchor hit or prefilter match begins (module docstring).
    starts_at_anchor: bool = False


def _str_list(raw: object, fail: Callable[[str, str], DetectorError], name: str) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise fail(name, "must be a list of strings")
    return list(raw)


def _parse_examples(
    raw: object, fail: Callable[[str, str], DetectorError]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if raw is None:
        return (), ()
    if not isinstance(raw, dict):
        raise fail("examples", "must be a table")
    for key in raw:
        if key not in _ALLOWED_EXAMPLE_KEYS:
            raise fail(f"examples.{key}", "unknown field")
    positive = _str_list(raw.get("positive", []), fail, "examples.positive")
    negative = _str_list(raw.get("negative", []), fail, "examples.negative")
    return tuple(positive), tuple(negative)


def _parse_prefilter(
    raw: object, fail: Callable[[str, str], DetectorError]
) -> tuple[re.Pattern[str], ...]:
    if raw is None:
        return ()
    sources = raw if isinstance(raw, list) else [raw]
    if not sources:
        raise fail("prefilter", "must be a non-empty string or list of strings")
    compiled: list[re.Pattern[str]] = []
    for source in sources:
        if not isinstance(source, str) or not source:
            raise fail("prefilter", "must be a non-empty string or list of strings")
        if not source.isascii():
            raise fail("prefilter", "must be ASCII (it runs over an ASCII byte view of the text)")
        try:
            rx = re.compile(source)
        except re.error as exc:
            raise fail("prefilter", f"does not compile: {exc}") from None
        if rx.search("") is not None:
            raise fail("prefilter", "must not match the empty string")
        compiled.append(rx)
    return tuple(compiled)


def _parse_gate(
    raw: object, fail: Callable[[str, str], DetectorError]
) -> re.Pattern[bytes] | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw or not raw.isascii():
        raise fail("gate", "must be a non-empty ASCII string")
    try:
        return re.compile(raw.encode("ascii"))
    except re.error as exc:
        raise fail("gate", f"does not compile: {exc}") from None


def _parse_window(
    raw: object, fail: Callable[[str, str], DetectorError]
) -> tuple[int, int | None]:
    """(after, before or None for the same) from ``n`` or ``[before, after]``."""

    def size(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise fail("window", "must be a non-negative integer or [before, after]")
        return value

    if isinstance(raw, list):
        if len(raw) != 2:
            raise fail("window", "must be a non-negative integer or [before, after]")
        return size(raw[1]), size(raw[0])
    return size(raw), None


def _parse_detector(path: Path, index: int, raw: dict[str, Any]) -> Detector:
    ident = raw.get("id")
    label = ident if isinstance(ident, str) and ident else f"#{index}"

    def fail(name: str, why: str) -> DetectorError:
        return DetectorError(f"{path}: detector {label}: field {name}: {why}")

    for key in raw:
        if key not in _ALLOWED_KEYS:
            raise fail(key, "unknown field")
    if not isinstance(ident, str) or not regex.fullmatch(r"[a-z][a-z0-9_]*", ident):
        raise fail("id", "must be a snake_case string")
    category = raw.get("category")
    if category not in CATEGORIES:
        raise fail("category", f"must be one of {sorted(CATEGORIES)}, got {category!r}")
    prefilter = _parse_prefilter(raw.get("prefilter"), fail)
    view = raw.get("prefilter_view", "text")
    if view not in PREFILTER_VIEWS:
        raise fail("prefilter_view", f"must be one of {list(PREFILTER_VIEWS)}, got {view!r}")
    if view != "text" and not prefilter:
        raise fail("prefilter_view", "needs a prefilter")
    anchors = _str_list(raw.get("anchors", [] if prefilter else None), fail, "anchors")
    if not all(anchors) or not (anchors or prefilter):
        raise fail("anchors", "must be a non-empty list of non-empty strings")
    source = raw.get("pattern")
    if not isinstance(source, str) or not source:
        raise fail("pattern", "must be a non-empty string")
    try:
        pattern = regex.compile(source)
    except regex.error as exc:
        raise fail("pattern", f"does not compile: {exc}") from None
    validator_name = raw.get("validator")
    validator: Callable[[str], bool] | None = None
    if validator_name is not None:
        if not isinstance(validator_name, str) or validator_name not in VALIDATORS:
            raise fail("validator", f"unknown validator {validator_name!r}")
        validator = VALIDATORS[validator_name]
    confidence = raw.get("confidence", 0.5)
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        raise fail("confidence", "must be a number")
    if not 0.0 <= confidence <= 1.0:
        raise fail("confidence", "must be between 0 and 1")
    window, window_before = _parse_window(raw.get("window", DEFAULT_WINDOW), fail)
    gate = _parse_gate(raw.get("gate"), fail)
    names = _str_list(raw.get("columns", []), fail, "columns")
    columns = frozenset(normalise_name(name) for name in names)
    if "" in columns:
        raise fail("columns", "a column name needs a letter or digit")
    starts_at_anchor = raw.get("starts_at_anchor", False)
    if not isinstance(starts_at_anchor, bool):
        raise fail("starts_at_anchor", "must be true or false")
    exclude = _str_list(raw.get("exclude", []), fail, "exclude")
    positive, negative = _parse_examples(raw.get("examples"), fail)
    return Detector(
        id=ident, category=category, anchors=tuple(anchors), pattern=pattern,
        validator=validator, confidence=float(confidence), exclude=frozenset(exclude),
        window=window, window_before=window_before, examples_positive=positive,
        examples_negative=negative, source=path, prefilter=prefilter, prefilter_view=view,
        gate=gate, columns=columns, starts_at_anchor=starts_at_anchor,
    )  # fmt: skip


def load_file(path: Path) -> list[Detector]:
    """Parse one detector file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise DetectorError(f"{path}: invalid TOML: {exc}") from None
    for key in data:
        if key != "detector":
            raise DetectorError(f"{path}: field {key}: unknown top-level field")
    entries = data.get("detector", [])
    if not isinstance(entries, list):
        raise DetectorError(f"{path}: field detector: must be an array of tables")
    return [_parse_detector(path, i, entry) for i, entry in enumerate(entries)]


def load_detectors(directory: Path = DEFAULT_DIRECTORY) -> list[Detector]:
    """Load every ``*.toml`` under ``directory`` (recursive, sorted); ids must be unique."""
    detectors: list[Detector] = []
    seen: dict[str, Path] = {}
    for path in sorted(directory.rglob("*.toml")):
        for det in load_file(path):
            if det.id in seen:
                raise DetectorError(
                    f"{path}: detector {det.id}: field id: duplicate (first in {seen[det.id]})"
                )
            seen[det.id] = path
            detectors.append(det)
    return detectors


class DetectorSet:
    """Detectors plus one Aho-Corasick automaton over their lowercased anchors.

    Built once; the automaton is only read afterwards, so one set can serve every request
    and thread.
    """

    def __init__(self, detectors: Sequence[Detector]) -> None:
        self.detectors: tuple[Detector, ...] = tuple(detectors)
        by_anchor: dict[str, list[int]] = {}
        for index, det in enumerate(self.detectors):
            for anchor in det.anchors:
                owners = by_anchor.setdefault(anchor.lower(), [])
                if index not in owners:
                    owners.append(index)
        self.automaton: Any = ahocorasick.Automaton()
        for anchor, owners in by_anchor.items():
            self.automaton.add_word(anchor, (len(anchor), tuple(owners)))
        if by_anchor:
            self.automaton.make_automaton()
        self._empty = not by_anchor
        # One bytes pattern per distinct (view, prefilter), shared by its detectors.
        by_prefilter: dict[tuple[str, str], tuple[re.Pattern[bytes], list[int]]] = {}
        for index, det in enumerate(self.detectors):
            for prefilter in det.prefilter:
                key = (det.prefilter_view, prefilter.pattern)
                if key not in by_prefilter:
                    by_prefilter[key] = (re.compile(prefilter.pattern.encode("ascii")), [])
                if index not in by_prefilter[key][1]:
                    by_prefilter[key][1].append(index)
        self.prefilters: tuple[tuple[bool, bytes, re.Pattern[bytes], tuple[int, ...]], ...] = (
            tuple(
                (view == "shape", _leading_literal(rx), rx, tuple(owners))
                for (view, _), (rx, owners) in by_prefilter.items()
            )
        )
        # Gate verdicts per group of detectors gated together, by window shape; cleared when
        # full.
        self._gate_verdicts: dict[tuple[int, ...], dict[bytes, tuple[int, ...]]] = {}

    def __len__(self) -> int:
        return len(self.detectors)

    def anchor_hits(
        self, lowered: str, merged: set[tuple[int, int]] | None = None
    ) -> dict[int, list[tuple[int, int]]]:
        """Per detector index, the regions (start, end) covered by its anchor hits.

        Touching or overlapping hits are merged as they arrive (a run of digits is one
        region), so digit-anchored detectors cost one region per run, not one per digit.
        ``merged``, when given, receives every region made of more than one hit.
        """
        if self._empty:
            return {}
        by_owners: dict[tuple[int, ...], list[list[int]]] = {}
        grown: list[list[int]] = []
        for last, (length, owners) in self.automaton.iter(lowered):
            start, end = last - length + 1, last + 1
            regions = by_owners.get(owners)
            if regions is None:
                by_owners[owners] = [[start, end]]
            elif start <= regions[-1][1]:
                region = regions[-1]
                region[0] = min(region[0], start)
                region[1] = end
                grown.append(region)
            else:
                regions.append([start, end])
        if merged is not None:
            merged.update((a, b) for a, b in grown)
        hits: dict[int, list[tuple[int, int]]] = {}
        for owners, regions in by_owners.items():
            spans = [(a, b) for a, b in regions]
            for index in owners:
                hits.setdefault(index, []).extend(spans)
        return hits

    def views(self, text: str) -> tuple[bytes, bytes]:
        """The text and shape byte views of ``text`` (normalised, not lowered)."""
        view = text.encode("ascii", "replace")
        return view, view.translate(_SHAPE)

    def gate_verdicts(self, members: list[int]) -> dict[bytes, tuple[int, ...]]:
        """For detectors gated together, the remembered verdicts by window shape: the
        positions in ``members`` whose gate passes (emptied when full)."""
        verdicts = self._gate_verdicts.setdefault(tuple(members), {})
        if len(verdicts) >= GATE_MEMO_ENTRIES:
            verdicts.clear()
        return verdicts

    def prefilter_hits(
        self, view: bytes, shape: bytes, hits: dict[int, list[tuple[int, int]]]
    ) -> None:
        """Add each prefilter's match spans over its byte view to ``hits``.

        One C-level ``finditer`` per distinct prefilter, shared by every detector using
        it; the views have one byte per character, so spans are text offsets.
        """
        for on_shape, literal, rx, owners in self.prefilters:
            data = shape if on_shape else view
            # A short text rarely holds a prefilter's leading literal: a C substring
            # test is much cheaper than starting a pass.
            if literal and literal not in data:
                continue
            spans = [m.span() for m in rx.finditer(data)]
            if not spans:
                continue
            for index in owners:
                existing = hits.get(index)
                hits[index] = spans if existing is None else existing + spans


def _leading_literal(rx: re.Pattern[bytes]) -> bytes:
    """The bytes every match of ``rx`` starts with (b"" when unknown): its leading
    literal characters, as ``re``'s own parser reads them."""
    if rx.flags & re.IGNORECASE:
        return b""
    try:
        items = re_parser.parse(rx.pattern).data
    except (re.error, AttributeError):
        return b""
    literal = bytearray()
    for op, value in items:
        if op is not re_constants.LITERAL:
            break
        literal.append(value)
    return bytes(literal)


@functools.lru_cache(maxsize=1)
def default_detector_set() -> DetectorSet:
    """The detector set shipped in ``policies/detectors``, built once per process."""
    return DetectorSet(load_detectors())
