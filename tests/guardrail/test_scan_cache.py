"""The scan cache: same findings as scanning, history scanned once, per key, bounded."""

from __future__ import annotations

import openai
import pytest

from relay.guardrail.detectors import default_detector_set
from relay.guardrail.scan import scan_many
from relay.guardrail.scan_cache import MIN_CACHED_CHARS, ScanCache
from tests.conftest import RelayFactory, Upstream

DETECTORS = default_detector_set()
SYSTEM = "You are a support assistant for Northwind. Mail the customer at bob@example.com."
HISTORY = [SYSTEM, "My card is 4111 1111 1111 1111 and my login fails every single time."]


def test_findings_are_those_of_a_scan_and_history_is_scanned_once() -> None:
    cache = ScanCache(DETECTORS, capacity=100)
    first = [*HISTORY, "first new turn, long enough to be worth remembering here ok"]
    second = [*HISTORY, "second new turn, with an address: eve@example.org, thanks!"]
    assert cache.scan_many(first, "key_a") == scan_many(first, DETECTORS)
    assert (cache.hits, cache.scanned) == (0, 3)
    assert cache.scan_many(second, "key_a") == scan_many(second, DETECTORS)
    assert (cache.hits, cache.scanned) == (2, 4)  # only the new turn was scanned


def test_callers_cannot_change_what_is_remembered() -> None:
    cache = ScanCache(DETECTORS, capacity=100)
    cache.scan_many([SYSTEM], "key_a")[0].clear()
    assert cache.scan_many([SYSTEM], "key_a") == scan_many([SYSTEM], DETECTORS)


def test_one_keys_texts_never_answer_for_another() -> None:
    cache = ScanCache(DETECTORS, capacity=100)
    cache.scan_many(HISTORY, "key_a")
    cache.scan_many(HISTORY, "key_b")
    assert cache.hits == 0 and len(cache) == 4


def test_short_texts_are_always_scanned() -> None:
    cache = ScanCache(DETECTORS, capacity=100)
    short = "mail a@example.com"
    assert len(short) < MIN_CACHED_CHARS
    cache.scan_many([short], "key_a")
    cache.scan_many([short], "key_a")
    assert (cache.hits, cache.scanned, len(cache)) == (0, 2, 0)


def test_least_recently_used_goes_first_and_zero_turns_it_off() -> None:
    texts = [f"text number {i} " + "x" * MIN_CACHED_CHARS for i in range(3)]
    cache = ScanCache(DETECTORS, capacity=2)
    cache.scan_many([texts[0]], "k")
    cache.scan_many([texts[1]], "k")
    cache.scan_many([texts[0]], "k")  # 0 is now the most recently used
    cache.scan_many([texts[2]], "k")  # evicts 1
    assert len(cache) == 2
    cache.scan_many([texts[0], texts[2]], "k")
    assert cache.hits == 3
    cache.scan_many([texts[1]], "k")
    assert cache.hits == 3

    off = ScanCache(DETECTORS, capacity=0)
    off.scan_many(HISTORY, "k")
    off.scan_many(HISTORY, "k")
    assert (off.hits, len(off)) == (0, 0)


@pytest.mark.parametrize("entries", [0, 10_000])
async def test_resent_history_is_masked_every_time(
    make_relay: RelayFactory, upstream: Upstream, entries: int
) -> None:
    relay = await make_relay(upstream, scan_cache_entries=entries)
    await relay.add_guardrail("enforce", [
        {"id": "mask-pii", "categories": ["pii"], "action": "mask", "on": "input"}])
    client = openai.AsyncOpenAI(base_url=relay.base_url, api_key=relay.key, max_retries=0)
    async with client:
        for turn in ("first question, about nothing in particular at all", "and a second"):
            messages = [{"role": "system", "content": SYSTEM},
                        {"role": "user", "content": HISTORY[1]},
                        {"role": "user", "content": turn}]
            await client.chat.completions.create(model="m", messages=messages)  # type: ignore[arg-type]
            sent = upstream.mock.seen[-1].body["messages"]
            assert "bob@example.com" not in sent[0]["content"]
            assert "[EMAIL_ADDRESS_1]" in sent[0]["content"]
            assert "4111" not in sent[1]["content"]


def test_without_hash_randomisation_the_digest_is_keyed_blake2b(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    cache = ScanCache(DETECTORS, capacity=100)
    cache.scan_many(HISTORY, "key_a")
    assert all(isinstance(k, bytes) and len(k) == 16 for k in cache._entries)
    assert cache.scan_many(HISTORY, "key_a") == scan_many(HISTORY, DETECTORS)
    assert cache.hits == 2
