"""JSON, CSV and PDF artifacts from one evidence document.

The artifact's SHA-256 is the statement's content hash, so it cannot be printed inside the
artifact; the evidence hash can, and the PDF carries the canonical evidence itself as an
attachment named `evidence.json`. Output is deterministic for identical input (the PDF's
creation date and file id derive from `generated_at` and the content), so regenerating a
report reproduces its content hash with the same fpdf2 version.

The PDF uses the core Helvetica/Courier fonts (Latin-1 only): other text is transliterated
(accents dropped) or, failing that, written as <U+XXXX>; the exact text is in the attachment.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from typing import Any, Literal

Format = Literal["json", "csv", "pdf"]
# Letters NFKD does not decompose to a Latin base.
_FOLD = {"\u0141": "L", "\u0142": "l", "\u0110": "D", "\u0111": "d", "\u0152": "OE",
         "\u0153": "oe", "\u0131": "i", "\u0126": "H", "\u0127": "h", "\u2018": "'",
         "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-",
         "\u2026": "..."}
CSV_HEADER = ["clause_id", "clause_title", "clause_state", "control_kind", "control_id",
              "control_state", "would_have_blocked", "applied", "reason"]


def render(fmt: Format, document: dict[str, Any], evidence_bytes: bytes) -> bytes:
    """The artifact bytes for `fmt`; `evidence_bytes` must be canonical(document)."""
    if fmt == "json":
        return evidence_bytes
    if fmt == "csv":
        return render_csv(document)
    if fmt == "pdf":
        # fpdf2 (and Pillow, fontTools behind it) is loaded on the first PDF, not with
        # the relay: it would add ~20 MB to every worker that never makes a report.
        from relay.compliance.render_pdf import render_pdf

        return render_pdf(document, evidence_bytes)
    raise ValueError(f"unknown report format {fmt!r}")


def render_csv(document: dict[str, Any]) -> bytes:
    """One row per clause x control; a gap is one row with empty control cells + reason."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for clause in document["coverage"]["clauses"]:
        head = [clause["id"], clause["title"], clause["state"]]
        if not clause["controls"]:
            writer.writerow([*head, "", "", "", "", "", clause.get("reason", "")])
        for c in clause["controls"]:
            writer.writerow([*head, c["kind"], c["id"], c["state"], c["would_have_blocked"],
                             c["applied"], ""])
    return out.getvalue().encode("utf-8")


def latin1(text: object) -> str:
    """Text the core PDF fonts can draw: Latin-1 kept, accents dropped, the rest <U+XXXX>."""
    out = []
    for ch in unicodedata.normalize("NFKC", str(text)):
        if ord(ch) < 256:
            out.append(ch)
            continue
        base = _FOLD.get(ch) or "".join(c for c in unicodedata.normalize("NFKD", ch)
                                        if ord(c) < 256 and not unicodedata.combining(c))
        out.append(base or f"<U+{ord(ch):04X}>")
    return "".join(out)
