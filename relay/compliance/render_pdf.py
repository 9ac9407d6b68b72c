"""The PDF artifact (fpdf2): a readable report with the canonical evidence attached as
`evidence.json`. Imported on the first PDF only (see render.render)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from relay.compliance.evidence import sha256_hex
from relay.compliance.render import latin1


class _Report(FPDF):
    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", size=8)
        self.cell(0, 8, f"page {self.page_no()}/{{nb}}", align="C")


def render_pdf(document: dict[str, Any], evidence_bytes: bytes) -> bytes:
    """A readable report with the canonical evidence attached as `evidence.json`."""
    generated = _parse_time(document["report"]["generated_at"])
    pdf = _Report(format="A4")
    pdf.set_creation_date(generated)
    pdf.set_title(latin1(f"{document['framework']['name']} evidence report"))
    pdf.set_author("orca-relay")
    pdf.set_margins(12, 12, 12)
    pdf.set_auto_page_break(True, margin=16)
    pdf.add_page()
    _header(pdf, document, sha256_hex(evidence_bytes))
    _matrix(pdf, document)
    _gaps(pdf, document)
    _counts(pdf, document)
    pdf.embed_file(bytes=evidence_bytes, basename="evidence.json", mime_type="application/json",
                   modification_date=generated,
                   desc="Canonical (RFC 8785) evidence document; SHA-256 is the evidence hash")
    return bytes(pdf.output())


def _parse_time(text: str) -> datetime:
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime(1970, 1, 1, tzinfo=UTC)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _heading(pdf: FPDF, text: str) -> None:
    pdf.ln(3)
    pdf.set_font("Helvetica", "B", 12)
    pdf.cell(0, 7, latin1(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Helvetica", size=9)


def _field(pdf: FPDF, label: str, value: object, mono: bool = False) -> None:
    pdf.set_font("Helvetica", "B", 9)
    pdf.cell(38, 5, latin1(label))
    pdf.set_font("Courier" if mono else "Helvetica", size=9)
    pdf.multi_cell(0, 5, latin1(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _header(pdf: FPDF, doc: dict[str, Any], evidence_sha256: str) -> None:
    fw = doc["framework"]
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, latin1(f"{fw['name']} compliance evidence report"),
             new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _field(pdf, "Framework", f"{fw['name']} ({fw['id']}), version {fw['version']}, "
           f"pack state {fw['state']}")
    _field(pdf, "Workspace", f"{doc['workspace']['name']} ({doc['workspace']['id']})")
    _field(pdf, "Report id", doc["report"]["id"], mono=True)
    _field(pdf, "Generated at", doc["report"]["generated_at"])
    _field(pdf, "Window", f"{doc['window']['since']} to {doc['window']['until']}")
    _field(pdf, "Region", doc["residency"]["region"] or "none declared")
    _field(pdf, "Residency", doc["residency"]["note"])
    subs = "; ".join(f"{s.get('name')} ({s.get('role')}, {', '.join(s.get('regions') or [])})"
                     for s in doc["subprocessors"]) or "none"
    _field(pdf, "Subprocessors", subs)
    _field(pdf, "Signing key id", doc["kid"], mono=True)
    _field(pdf, "Evidence SHA-256", evidence_sha256, mono=True)
    pdf.set_font("Helvetica", "I", 8)
    pdf.multi_cell(0, 4, "The evidence hash is the SHA-256 of the attached evidence.json "
                   "(RFC 8785 bytes). statement.json in the report bundle carries it and the "
                   "SHA-256 of this file, signed with Ed25519; see VERIFY.txt.",
                   new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _matrix(pdf: FPDF, doc: dict[str, Any]) -> None:
    counts = doc["coverage"]["counts"]
    _heading(pdf, f"Coverage: {counts.get('enforcing', 0)} enforcing, "
             f"{counts.get('observe', 0)} observe, {counts.get('gap', 0)} gap")
    pdf.set_font("Helvetica", size=8)
    with pdf.table(col_widths=(18, 52, 16, 14, 48, 16, 11, 11), text_align="LEFT",
                   line_height=4) as table:
        table.row(["Clause", "Title", "State", "Kind", "Control", "Control state",
                   "Would block", "Applied"])
        for clause in doc["coverage"]["clauses"]:
            head = [latin1(clause["id"]), latin1(clause["title"]), clause["state"]]
            if not clause["controls"]:
                table.row([*head, "-", "(organizational: see gaps)", "-", "-", "-"])
            for c in clause["controls"]:
                table.row([*head, latin1(c["kind"]), latin1(c["id"]), latin1(c["state"]),
                           str(c["would_have_blocked"]), str(c["applied"])])


def _gaps(pdf: FPDF, doc: dict[str, Any]) -> None:
    _heading(pdf, f"Disclosed gaps ({len(doc['gaps'])})")
    for gap in doc["gaps"]:
        pdf.set_font("Helvetica", "B", 9)
        pdf.multi_cell(0, 5, latin1(f"{gap['clause_id']} {gap['title']}"),
                       new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font("Helvetica", size=9)
        pdf.multi_cell(0, 5, latin1(gap["reason"]), new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _counts(pdf: FPDF, doc: dict[str, Any]) -> None:
    totals, log = doc["totals"], doc["event_log"]
    _heading(pdf, "Evidence")
    _field(pdf, "Controls", f"{totals['controls']} in {totals['clauses']} clauses")
    _field(pdf, "Would have blocked", totals["would_have_blocked"])
    _field(pdf, "Applied", totals["applied"])
    _field(pdf, "Samples", f"{totals['samples']} masked events (in evidence.json)")
    for pop in doc["populations"]:
        _field(pdf, "Population", f"{pop.get('figure')}: {pop.get('count')}  "
               f"[{pop.get('query')}]")
    _heading(pdf, "Event log head")
    _field(pdf, "Sequence", f"{log['first_seq']} to {log['last_seq']} "
           f"({log['events']} events)")
    _field(pdf, "Head hash", log["head_hash"], mono=True)
