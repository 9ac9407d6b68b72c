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
        "card_number",
        ["4111111111111111", "4111 1111 1111 1111", "4222222222222", "4000000000000000006",
         "5555-5555-5555-4444", "2223003122003222", "378282246310005", "30569309025904",
         "36227206271667", "6011000990139424", "3530111333300000", "6200000000000005",
         "560885404494", "6759649826438453", "2200000000000004"],
        ["4111111111111112", "5253795106517", "6958091570237", "20231028102009",
         "411111111111113", "5105105105105100123", "37828224631000", "3782822463100056",
         "6011000000000004000000", "1234567890128", "0000000000000000"],
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
        "secret_value",
        ["PtYgjmUhBel31iEl2hpChYgCfrL1spNxnyVmihA+", "Makebox5751#", "Earlypast8580",
         "*!6NMKsq^LWLo1713s", "@PkJ0MMk%djI", "2434b25cd44b8da3afa33064a108abb8",
         "N8BKZEsE-2EQ-P", "Password123", "m$*y&f*&dTxAO", "!ZvMBLz$UL#G", "p@ssw0rd",
         "/T8sT3e2pK2YaFc/hCRnDJdGZsFQNYL7"],
        ["changeme123", "Password", "password1", "deadbeefdeadbeef", "abc123ef",
         "1234567890123456", "settings.SECRET_KEY", "DB_PASSWORD_FILE", "cl100k_base",
         "os.getenv(", "env[OPENAI_API_KEY", "https://oauth2.example.com/token",
         "/run/secrets/db_password", "./certs/Server2.pem", "C:\\Users\\Svc2\\key.pem",
         "refreshToken2", "tls-secret-2024", "ParseResults):", "A&tokenb=B&c=1", "Ab1", ""],
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


def test_card_iin_ranges_are_well_formed() -> None:
    for low, high, lengths in validators.CARD_IIN_RANGES:
        assert low.isdigit() and high.isdigit() and len(low) == len(high) and low <= high
        assert lengths and all(12 <= n <= 19 for n in lengths)


@pytest.mark.parametrize(
    ("digits", "expected"),
    [
        ("4" + "0" * 12, True),  # Visa 13
        ("4" + "0" * 14, False),  # Visa is never 15
        ("2221" + "0" * 12, True),  # Mastercard 2-series low edge
        ("2720" + "0" * 12, True),  # and high edge
        ("2721" + "0" * 12, False),
        ("2019" + "0" * 10, False),  # a YYYY... timestamp, 14 digits
        ("30" + "0" * 12, True),  # Diners Carte Blanche 14
        ("34" + "0" * 13, True),  # Amex 15
        ("34" + "0" * 14, False),  # Amex is never 16
        ("6759" + "0" * 8, True),  # Maestro 12
        ("69" + "0" * 11, False),  # 13 digits under 69: no brand
    ],
)
def test_card_brand_length(digits: str, expected: bool) -> None:
    assert validators.card_brand_length(digits) is expected
