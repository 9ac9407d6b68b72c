"""Rules in the shipped detector files that need more than one-line examples: tables."""

from __future__ import annotations

from relay.guardrail.detectors import default_detector_set
from relay.guardrail.scan import scan


def ssns(text: str) -> list[str]:
    return [
        text[f.start : f.end]
        for f in scan(text, default_detector_set())
        if f.detector in ("us_ssn", "us_ssn_column")
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


def test_ssn_column_is_found_however_far_below_its_header() -> None:
    rows = "\n".join(f"{i},x" for i in range(5000))
    assert ssns(f"id,ssn\n{rows}\n1,536221234\n") == ["536221234"]


def test_a_line_without_the_delimiter_ends_the_table() -> None:
    # Prose between the header and the value: the value's table has no SSN column.
    assert ssns("id,ssn\n1,x\nsee below\n1,536221234\n") == []
    assert ssns("id,ssn\n1,x\n\n1,536221234\n") == []


def test_headers_are_read_per_delimiter_and_per_table() -> None:
    text = "a;ssn\nx;536221234\n\nssn,a\n536221235,x\n\nb,c\n536221236,x\n"
    assert ssns(text) == ["536221234", "536221235"]


def test_tab_separated_tables_work_too() -> None:
    assert ssns("name\tssn\nAnn\t536221234\n") == ["536221234"]


def test_crlf_tables_and_quoted_headers() -> None:
    assert ssns('"id","SSN"\r\n1,536221234\r\n2,536221235\r\n') == ["536221234", "536221235"]
    assert ssns("id|Social-Security No.\r\n1|536221234") == ["536221234"]
