"""Pure checks that confirm a regex candidate, looked up by name from detector files.

Each validator is ``(value: str) -> bool``: True keeps the finding. They see the matched
value (or the pattern's ``value`` group) after normalisation, so separators such as spaces
and dashes may still be present and are stripped here where the format allows them.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import math
import re
from collections import Counter
from collections.abc import Callable

# ISO 13616 IBAN lengths for the countries we recognise (SWIFT IBAN registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BR": 29, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18,
    "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22,
    "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28,
    "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24,
    "SI": 19, "SK": 24, "SM": 27, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24,
    "XK": 20,
}  # fmt: skip

ENTROPY_THRESHOLD = 3.5  # bits per character; random base62 of length 32 is ~5


_SEPARATOR_TABLE = str.maketrans("", "", " -\u00a0")
# Luhn doubles every second digit from the right and adds the digits of the product.
_LUHN_DOUBLED = str.maketrans("0123456789", "0246813579")


def _strip_separators(value: str) -> str:
    return value.translate(_SEPARATOR_TABLE)


def _luhn_digits(digits: str) -> bool:
    if not digits.isascii() or not digits.isdigit() or not 12 <= len(digits) <= 19:
        return False
    if digits.count(digits[0]) == len(digits):
        return False
    # Summing the ASCII bytes runs in C; each digit's code is its value plus 48.
    backwards = digits[::-1]
    kept = backwards[0::2].encode("ascii")
    doubled = backwards[1::2].translate(_LUHN_DOUBLED).encode("ascii")
    return (sum(kept) + sum(doubled) - 48 * len(digits)) % 10 == 0


def luhn(value: str) -> bool:
    """Luhn mod-10 over the digits of ``value`` (spaces and dashes allowed), 12-19 digits."""
    return _luhn_digits(_strip_separators(value))


# Issuer identification number (IIN) ranges and the PAN lengths issued under them (ISO/IEC
# 7812; card brands' published ranges). (low prefix, high prefix, lengths): a number is a card
# number only if some range holds its leading digits and its length.
_L12_19 = frozenset(range(12, 20))
_L14_19 = frozenset(range(14, 20))
_L16_19 = frozenset(range(16, 20))
CARD_IIN_RANGES: tuple[tuple[str, str, frozenset[int]], ...] = (
    ("4", "4", frozenset({13, 16, 19})),  # Visa (13 digits: legacy cards)
    ("51", "55", frozenset({16})),  # Mastercard
    ("2221", "2720", frozenset({16})),  # Mastercard 2-series
    ("2200", "2204", frozenset({16})),  # Mir
    ("34", "34", frozenset({15})),  # American Express
    ("37", "37", frozenset({15})),
    ("300", "305", _L14_19),  # Diners Club (Carte Blanche 14, international 16-19)
    ("3095", "3095", _L14_19),
    ("36", "36", _L14_19),
    ("38", "39", _L14_19),
    ("35", "35", _L16_19),  # JCB: 3528-3589, and the rest of 35 as test-card generators use it
    ("6011", "6011", _L16_19),  # Discover
    ("644", "649", _L16_19),
    ("65", "65", _L16_19),
    ("60", "60", frozenset({16})),  # RuPay
    ("62", "62", _L16_19),  # UnionPay (and Discover co-brand 622126-622925)
    ("636", "639", _L16_19),  # InterPayment, InstaPayment
    ("50", "50", _L12_19),  # Maestro (historic 50 and 56-58 blocks, listed IINs in 6)
    ("56", "58", _L12_19),
    ("0604", "0604", _L12_19),
    ("6304", "6304", _L12_19),
    ("6390", "6390", _L12_19),
    ("6759", "6759", _L12_19),
    ("6761", "6763", _L12_19),
)


def card_brand_length(digits: str) -> bool:
    """True when the leading digits fall in a card brand's IIN range issued at this length.

    Keeps Luhn-valid look-alikes out: 13-digit EAN barcodes outside Visa's ``4``, 14-digit
    ``YYYYMMDDhhmmss`` timestamps (no brand issues 14 digits under ``19``/``20``), 15-digit
    numbers that are not Amex.
    """
    n = len(digits)
    for low, high, lengths in CARD_IIN_RANGES:
        if n in lengths and low <= digits[: len(low)] <= high:
            return True
    return False


def card_number(value: str) -> bool:
    """A payment card number: Luhn-valid and a known brand's IIN range and length."""
    digits = _strip_separators(value)
    return _luhn_digits(digits) and card_brand_length(digits)


def iban_mod97(value: str) -> bool:
    """ISO 13616: known country, that country's length, and mod-97 remainder 1."""
    iban = _strip_separators(value).upper()
    if not iban.isascii() or not iban.isalnum() or len(iban) < 5:
        return False
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban[2:4].isdigit():
        return False
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def ssn_rules(value: str) -> bool:
    """US SSN issuance rules: area not 000, 666 or 900-999; group not 00; serial not 0000."""
    digits = _strip_separators(value)
    if len(digits) != 9 or not digits.isascii() or not digits.isdigit():
        return False
    area, group, serial = int(digits[:3]), int(digits[3:5]), int(digits[5:])
    if area == 0 or area == 666 or area >= 900:
        return False
    return group != 0 and serial != 0


def ipv4(value: str) -> bool:
    """Dotted quad with every octet in 0-255 and no leading zeros (which some parse as octal)."""
    parts = value.split(".")
    if len(parts) != 4:
        return False
    for part in parts:
        if not part.isascii() or not part.isdigit() or not 1 <= len(part) <= 3:
            return False
        if len(part) > 1 and part[0] == "0":
            return False
        if int(part) > 255:
            return False
    return True


def ipv6(value: str) -> bool:
    """A parseable IPv6 address that looks like one: all eight groups, or a digit and two groups.

    The second rule keeps C++ scopes and words such as ``abc::def`` or ``dead::beef`` out.
    """
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    groups = [g for g in value.split(":") if g]
    if len(groups) == 8:
        return True
    return len(groups) >= 2 and any(ch.isdigit() for ch in value)


def phone_digits(value: str) -> bool:
    """E.164 allows at most 15 digits; fewer than 8 is a code or a count, not a number."""
    count = sum(1 for ch in value if ch.isdigit())
    return 8 <= count <= 15


def aba_checksum(value: str) -> bool:
    """ABA routing number: nine digits, weights 3-7-1, sum divisible by 10, not all zeros."""
    if len(value) != 9 or not value.isascii() or not value.isdigit() or value == "000000000":
        return False
    total = sum(w * (ord(ch) - 48) for w, ch in zip((3, 7, 1) * 3, value, strict=True))
    return total % 10 == 0


def nhs_mod11(value: str) -> bool:
    """UK NHS number: ten digits (spaces or dashes allowed), modulus-11 check digit."""
    digits = _strip_separators(value)
    if len(digits) != 10 or not digits.isascii() or not digits.isdigit():
        return False
    total = sum((10 - i) * (ord(ch) - 48) for i, ch in enumerate(digits[:9]))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == ord(digits[9]) - 48


# c * log2(c) for the counts of short values: entropy is log2(n) - sum(c log2 c) / n.
_C_LOG2_C = tuple(c * math.log2(c) if c else 0.0 for c in range(257))


def shannon_entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    if not value:
        return 0.0
    n = len(value)
    counts = Counter(value).values()
    if n < len(_C_LOG2_C):
        weighted = sum(map(_C_LOG2_C.__getitem__, counts))
    else:
        weighted = sum(c * math.log2(c) for c in counts)
    return max(0.0, math.log2(n) - weighted / n)


def entropy(value: str) -> bool:
    """True when ``value`` looks random enough to be a secret rather than a word."""
    return shannon_entropy(value) >= ENTROPY_THRESHOLD


# Values that name a secret instead of holding one: code and config references.
_REFERENCE = re.compile(
    r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+"  # attribute path: settings.SECRET_KEY
    r"|[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+"  # environment variable name: DB_PASSWORD_FILE
    r"|[a-z][a-z0-9]*(?:_[a-z0-9]+)+"  # snake_case identifier: cl100k_base
)
# File paths: /run/secrets/db, ./certs/key.pem, C:\\Users\\svc\\key.pem
_PATH = re.compile(r"(?:~|\.{1,2})?(?:/[\w.-]+)+/?|[A-Za-z]:\\[\w.\\-]*")
_CAMEL_CASE = re.compile(r"[a-z]{2,}[a-z0-9]*(?:[A-Z][a-z0-9]+)+")  # refreshToken2
_HEX = re.compile(r"[0-9a-fA-F]+")
HEX_ENTROPY_THRESHOLD = 3.0  # detect-secrets' hex limit; random 32-digit hex averages ~3.8
_SEPARATORS = frozenset("-_.")
_QUERY_PARAMETER = re.compile(r"&\w+=")


def _mixes_case_and_digits(text: str) -> bool:
    return (
        any(c.isupper() for c in text)
        and any(c.islower() for c in text)
        and any(c.isdigit() for c in text)
    )


def _is_reference(value: str) -> bool:
    if "://" in value or any(c in value for c in "()[]") or _REFERENCE.fullmatch(value):
        return True
    if _QUERY_PARAMETER.search(value):  # "a&token=b": the rest of a query string
        return True
    # A path's segments are names; base64 ("/T8sT3e2pK2YaFc/hCRnDJdG") has long segments that
    # mix case and digits with no file extension.
    return _PATH.fullmatch(value) is not None and not any(
        len(part) >= 8 and "." not in part and _mixes_case_and_digits(part)
        for part in value.replace("\\", "/").split("/")
    )


def _character_classes(value: str) -> int:
    """How many of upper case, lower case, digits and symbols (not - _ .) ``value`` uses."""
    upper = lower = digit = symbol = False
    for c in value:
        if c.isupper():
            upper = True
        elif c.islower():
            lower = True
        elif c.isdigit():
            digit = True
        elif c not in _SEPARATORS:
            symbol = True
    return upper + lower + digit + symbol


def secret_value(value: str) -> bool:
    """True for a value assigned to a secret-named key that looks like a real secret.

    Random enough (``entropy``); or, below that bar, hex of key length (16+ digits mixing
    letters and digits, above the hex entropy floor) or password-shaped: 8+ characters
    using three of the four character classes of common password policies (upper case,
    lower case, digits, symbols other than the separators ``- _ .``), as in ``Makebox5751#``
    or ``m$*y&f*&dTxAO``, and not a camelCase variable (``refreshToken2``). Code and config
    references are never secrets: URLs and query strings, calls, indexing and type
    annotations (``ParseResults):``), attribute paths (``settings.SECRET_KEY``), variable
    names (``DB_PASSWORD_FILE``) and file paths (``/run/secrets/db``).
    """
    if len(value) < 8 or _is_reference(value):
        return False
    if entropy(value):
        return True
    if _HEX.fullmatch(value):
        mixed = any(c.isdigit() for c in value) and any(c.isalpha() for c in value)
        return len(value) >= 16 and mixed and shannon_entropy(value) >= HEX_ENTROPY_THRESHOLD
    if _CAMEL_CASE.fullmatch(value):  # a variable, not a password
        return False
    return _character_classes(value) >= 3


def jwt(value: str) -> bool:
    """Three dot-separated segments whose header base64url-decodes to a JSON object with alg."""
    parts = value.split(".")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        return False
    header = parts[0]
    try:
        raw = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
        decoded = json.loads(raw)
    except (binascii.Error, ValueError):
        return False
    return isinstance(decoded, dict) and "alg" in decoded


VALIDATORS: dict[str, Callable[[str], bool]] = {
    "luhn": luhn,
    "card_number": card_number,
    "iban_mod97": iban_mod97,
    "ssn_rules": ssn_rules,
    "ipv4": ipv4,
    "ipv6": ipv6,
    "phone_digits": phone_digits,
    "entropy": entropy,
    "secret_value": secret_value,
    "jwt": jwt,
    "aba_checksum": aba_checksum,
    "nhs_mod11": nhs_mod11,
}
