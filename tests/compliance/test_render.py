"""JSON, CSV and PDF artifacts; the PDF is opened with a real parser (pypdf)."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import pypdf
import pytest

from relay.compliance.evidence import build_evidence, canonical, sha256_hex
from relay.compliance.render import CSV_HEADER, latin1, render
from tests.compliance.test_evidence import sample_inputs


def _doc(**overrides: Any) -> tuple[dict[str, Any], bytes]:
    doc = build_evidence(sample_inputs(**overrides))
    return doc, canonical(doc)


def _pdf_text(data: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(data))
    return re.sub(r"\s+", " ", " ".join(page.extract_text() for page in reader.pages))


def test_json_artifact_is_the_canonical_evidence() -> None:
    doc, evidence = _doc()
    assert render("json", doc, evidence) == evidence


def test_csv_one_row_per_clause_and_control() -> None:
    doc, evidence = _doc()
    rows = list(csv.reader(io.StringIO(render("csv", doc, evidence).decode("utf-8"))))
    assert rows[0] == CSV_HEADER
    body = rows[1:]
    expected = sum(max(1, len(c["controls"])) for c in doc["coverage"]["clauses"])
    assert len(body) == expected == 4
    assert body[0] == ["CC6.1", "Logical access: credentials kept out", "observe",
                       "guardrail", "soc2.block-secrets-in", "observe", "7", "0", ""]
    assert body[2][1] == "Transmission: données masquées"
    gap = body[3]
    assert gap[:3] == ["CC1.1", "Integrity and ethical values", "gap"]
    assert gap[3:8] == ["", "", "", "", ""]
    assert gap[8].startswith("Organizational")


def test_pdf_is_readable_and_carries_the_evidence() -> None:
    doc, evidence = _doc()
    data = render("pdf", doc, evidence)
    reader = pypdf.PdfReader(io.BytesIO(data))
    assert reader.attachments["evidence.json"] == [evidence]
    text = _pdf_text(data)
    for needle in ("SOC 2 compliance evidence report", "rep_01", "ed25519-0011223344556677",
                   sha256_hex(evidence), "ab" * 32, "CC6.1", "soc2.block-secrets-in",
                   "Disclosed gaps (1)", "Organizational: tone at the top",
                   "2025-03-04T05:06:07Z", "Acme Ørca", "eu"):
        assert needle in text, needle


def test_pdf_is_deterministic() -> None:
    doc, evidence = _doc()
    assert render("pdf", doc, evidence) == render("pdf", doc, evidence)


def test_pdf_survives_non_latin_text() -> None:
    doc, evidence = _doc(workspace_name="東京チーム Łódź Ωmega", framework_name="ГОСТ 57580")
    data = render("pdf", doc, evidence)
    reader = pypdf.PdfReader(io.BytesIO(data))
    assert reader.attachments["evidence.json"] == [evidence]
    text = _pdf_text(data)
    assert "<U+6771><U+4EAC>" in text and "Lódz" in text
    assert "東京チーム".encode() in evidence


def test_latin1_transliteration() -> None:
    assert latin1("café Ørca") == "café Ørca"
    assert latin1("Łódź") == "Lódz"
    assert latin1("ﬁle") == "file"
    assert latin1("東") == "<U+6771>"
    latin1("\U0001f600 ok").encode("latin-1")


def test_unknown_format_is_refused() -> None:
    doc, evidence = _doc()
    with pytest.raises(ValueError, match="unknown report format"):
        render("xml", doc, evidence)  # type: ignore[arg-type]
