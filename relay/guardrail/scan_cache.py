"""Findings of texts a relay key sent before, so a conversation's history is scanned once.

Chat clients resend the whole conversation with every request: the system prompt and
every earlier turn come back unchanged, and only the newest turn is new. Scanning is pure
(same text and detector set, same findings), so the findings of a text can be kept and
reused. What is kept is only a digest of the text and the findings' offsets: never the
text.

- The digest is keyed with a random key per process, over the relay key's id and the
  text: Python's own string hash (SipHash-1-3, 64 bits, keyed at start-up) when hash
  randomisation is on, as it is unless PYTHONHASHSEED is set; keyed BLAKE2b otherwise.
  Nothing stored can be checked against a guess offline, no input can be crafted to
  collide with another, and one key's texts never answer for another's: a hit is faster
  than a scan, and a cache shared across keys would let one tenant time whether another
  had sent a given text.
- Short texts are scanned every time: they cost little, and a short text is the kind an
  attacker could guess.
- Least recently used entries go first once ``capacity`` is reached.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Hashable

from relay.guardrail.detectors import DetectorSet
from relay.guardrail.scan import Finding, scan_many

MIN_CACHED_CHARS = 64


def _keyed_digest() -> Callable[[str, str], Hashable]:
    """digest(owner, text), keyed with a secret this process drew at start-up."""
    if sys.flags.hash_randomization and os.environ.get("PYTHONHASHSEED", "random") == "random":
        return lambda owner, text: hash((owner, text))
    keyed = hashlib.blake2b(key=os.urandom(32), digest_size=16)

    def digest(owner: str, text: str) -> Hashable:
        hasher = keyed.copy()
        hasher.update(owner.encode() + b"\x00" + text.encode("utf-8", "surrogatepass"))
        return hasher.digest()

    return digest


class ScanCache:
    """``scan_many`` with memory of earlier texts, per relay key; one per detector set."""

    def __init__(self, detectors: DetectorSet, capacity: int) -> None:
        self.detectors = detectors
        self.capacity = capacity
        self.hits = 0
        self.scanned = 0
        self._digest = _keyed_digest()
        self._entries: dict[Hashable, tuple[Finding, ...]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def scan_many(self, texts: list[str], owner: str) -> list[list[Finding]]:
        """Findings per text, as ``scan_many(texts)``; ``owner`` is the relay key's id."""
        if self.capacity <= 0:
            return scan_many(texts, self.detectors)
        results: list[list[Finding] | None] = [None] * len(texts)
        digests: list[Hashable | None] = [None] * len(texts)
        missing: list[int] = []
        entries = self._entries
        keyed_digest = self._digest
        for i, text in enumerate(texts):
            if len(text) < MIN_CACHED_CHARS:
                missing.append(i)
                continue
            digest = keyed_digest(owner, text)
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
