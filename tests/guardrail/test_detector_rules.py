"""Rules in the shipped detector files that need more than one-line examples: tables."""

from __future__ import annotations

from relay.guardrail.detectors import default_detector_set
from relay.guardrail.scan import scan


def ssns(text: str) -> list[str]:
    return [
        text[f.start : f.end] for f in scan(text, default_detector_set()) if f.detector == "us_ssn"
    ]


def test_ssn_column_is_found_in_every_row_under_its_header() -> None:
    rows = [f"P{i},p{i}@example.com,53622{i:04d},10.0.0.{i}" for i in range(1, 30)]
    text = "Export:\n\nname,email,SSN,ip\n" + "\n".join(rows) + "\n"
    assert ssns(text) == [f"53622{i:04d}" for i in range(1, 30)]


def test_ssn_column_counts_quoted_fields_with_separators_as_one() -> None:
    text = '"name","account","ssn"\n"Doe, Jane",536221235,536221234\n'
    assert ssns(text) == ["536221234"]


def test_a_column_only_starting_with_ssn_is_not_the_ssn_column() -> None:
    text = "ssn_on_file,account\nyes,536221234\n"
    assert ssns(text) == []


def test_ssn_column_header_must_be_at_most_100_rows_up() -> None:
    # The header must be within 100 rows (and 4,000 characters) above the value.
    near = "\n".join(f"{i},x" for i in range(50))
    far = "\n".join(f"{i},x" for i in range(150))
    assert ssns(f"id,ssn\n{near}\n1,536221234\n") == ["536221234"]
    assert ssns(f"id,ssn\n{far}\n1,536221234\n") == []


def test_tab_separated_tables_work_too() -> None:
    assert ssns("name\tssn\nAnn\t536221234\n") == ["536221234"]
