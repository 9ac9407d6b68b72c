from __future__ import annotations

from collections.abc import Callable

import pytest

from relay.guardrail import validators
from relay.guardrail.validators import VALIDATORS


def _table(
    name: str, good: list[str], bad: list[str]
) -> list[tuple[Callable[[str], bool], str, bool]]:
    fn = VALIDATORS[name]
    return [(fn, v, True) for v in good] + [(fn, v, False) for v in bad]


CASES = [
    *_table(
        "luhn",
        ["4111111111111111", "4111 1111 1111 1111", "5555-5555-5555-4444", "378282246310005",
         "6011000990139424", "4012888888881881"],
        ["4111111111111112", "0000000000000000", "12345", "41111111111111111111",
         "4111x111111111111", "４１１１１１１１１１１１１１１１"],  # noqa: RUF001
    ),
    *_table(
        "iban_mod97",
        ["GB82WEST12345698765432", "GB82 WEST 1234 5698 7654 32", "gb82west12345698765432",
         "DE89370400440532013000", "NL91ABNA0417164300", "FR1420041010050500013M02606"],
        ["GB82WEST12345698765433", "GB83WEST12345698765432", "XX82WEST12345698765432",
         "GB82WEST1234569876543", "GB82", "GBXXWEST12345698765432", "GB82WEST1234569876543!"],
    ),
    *_table(
        "ssn_rules",
        ["536-22-1234", "536 22 1234", "536221234", "001-01-0001", "899-99-9999"],
        ["000-22-1234", "666-22-1234", "900-22-1234", "999-22-1234", "536-00-1234",
         "536-22-0000", "53622123", "5362212345", "53a221234"],
    ),
    *_table(
        "ipv4",
        ["203.0.113.42", "0.0.0.0", "255.255.255.255", "10.1.2.3"],
        ["256.1.1.1", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1..2.3", "a.b.c.d", "1234.1.1.1"],
    ),
    *_table(
        "ipv6",
        ["2001:db8::1", "fe80::1ff:fe23:4567:890a", "2001:0db8:0000:0000:0000:ff00:0042:8329",
         "abcd:ef01:abcd:ef01:abcd:ef01:abcd:ef01"],
        ["abc::def", "dead::beef", "::1", "::", "1::2::3", "12345::1", "g::1"],
    ),
    *_table(
        "phone_digits",
        ["+44 20 7946 0958", "+4915123456789", "+1-202-555-0143"],
        ["+1 5", "+123456789012345678", "+12 34"],
    ),
    *_table(
        "entropy",
        ["PtYgjmUhBel31iEl2hpChYgCfrL1spNxnyVmihA+", "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"],
        ["aaaaaaaaaaaaaaaaaaaaaaaa", "abababababababab", "password", ""],
    ),
    *_table(
        "jwt",
        ["eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln", "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."],
        ["eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxIn0.c2ln", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0",
         "bm90anNvbg.eyJzdWIiOiIxIn0.c2ln", "WyJhbGciXQ.eyJzdWIiOiIxIn0.c2ln", "..", "%%%.a.b",
         "eyJhbGciOiJIUzI1NiJ9..c2ln"],
    ),
    *_table(
        "aba_checksum",
        ["070069372", "073957575", "011000015", "021000021"],
        ["070069373", "000000000", "07006937", "0700693720", "07006937x", "０７００６９３７２"],  # noqa: RUF001
    ),
    *_table(
        "nhs_mod11",
        ["9434765919", "943 476 5919", "943-476-5919", "4010232137"],
        ["9434765918", "943476591", "94347659190", "943476591x", "1000000000"],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("validator", "value", "expected"),
    CASES,
    ids=[f"{fn.__name__}-{value!r}-{expected}" for fn, value, expected in CASES],
)
def test_validator_table(validator: Callable[[str], bool], value: str, expected: bool) -> None:
    assert validator(value) is expected


def test_every_validator_has_a_table() -> None:
    covered = {fn for fn, _, _ in CASES}
    assert set(VALIDATORS.values()) == covered


def test_shannon_entropy_values() -> None:
    assert validators.shannon_entropy("") == 0.0
    assert validators.shannon_entropy("aaaa") == 0.0
    assert validators.shannon_entropy("abcd") == pytest.approx(2.0)


def test_iban_length_table_is_consistent() -> None:
    for code, length in validators.IBAN_LENGTHS.items():
        assert len(code) == 2 and code.isupper() and 15 <= length <= 34
