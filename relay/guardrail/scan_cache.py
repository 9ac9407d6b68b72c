"""Findings of texts a relay key sent before, so a conversation's history is scanned once.

Chat clients resend the whole conversation with every request: the system prompt and
every earlier turn come back unchanged, and only the newest turn is new. Scanning is pure
(same text and detector set, same findings), so the findings of a text can be kept and
reused. What is kept is only a digest of the text and the findings' offsets: never the
text.

- The digest is keyed BLAKE2b with a random key per process, over the relay key's id and
  the text. Nothing stored can be checked against a guess offline, and one key's texts
  never answer for another's: a hit is faster than a scan, and a cache shared across keys
  would let one tenant time whether another had sent a given text.
- Short texts are scanned every time: they cost little, and a short text is the kind an
  attacker could guess.
- Least recently used entries go first once ``capacity`` is reached.
"""

from __future__ import annotations

import hashlib
import os

from relay.guardrail.detectors import DetectorSet
from relay.guardrail.scan import Finding, scan_many

MIN_CACHED_CHARS = 64


class ScanCache:
    """``scan_many`` with memory of earlier texts, per relay key; one per detector set."""

    def __init__(self, detectors: DetectorSet, capacity: int) -> None:
        self.detectors = detectors
        self.capacity = capacity
        self.hits = 0
        self.scanned = 0
        self._key = os.urandom(32)
        self._entries: dict[bytes, tuple[Finding, ...]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def scan_many(self, texts: list[str], owner: str) -> list[list[Finding]]:
        """Findings per text, as ``scan_many(texts)``; ``owner`` is the relay key's id."""
        if self.capacity <= 0:
            return scan_many(texts, self.detectors)
        results: list[list[Finding] | None] = [None] * len(texts)
        digests: list[bytes | None] = [None] * len(texts)
        missing: list[int] = []
        entries = self._entries
        salt = owner.encode() + b"\x00"
        for i, text in enumerate(texts):
            if len(text) < MIN_CACHED_CHARS:
                missing.append(i)
                continue
            digest = hashlib.blake2b(
                salt + text.encode("utf-8", "surrogatepass"), key=self._key, digest_size=16
            ).digest()
            found = entries.pop(digest, None)
            if found is None:
                digests[i] = digest
                missing.append(i)
            else:
                entries[digest] = found  # re-inserted: now the most recently used
                results[i] = list(found)
                self.hits += 1
        if missing:
            self.scanned += len(missing)
            scanned = scan_many([texts[i] for i in missing], self.detectors)
            for i, findings in zip(missing, scanned, strict=True):
                results[i] = findings
                remember = digests[i]
                if remember is not None:
                    entries[remember] = tuple(findings)
            while len(entries) > self.capacity:
                del entries[next(iter(entries))]
        return [r if r is not None else [] for r in results]
