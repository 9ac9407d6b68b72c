"""The whole relay on the PostgreSQL backend (ORCA_DATABASE_URL=postgresql://…): bootstrap,
a guardrail that blocks, metering and the evidence chain, through the official SDK."""

from __future__ import annotations

import aiohttp
import openai
import pytest

from relay.store.base import UsageDelta
from relay.store.postgres import PostgresStore
from tests.conftest import RelayFactory, Upstream
from tests.store.conftest import raw_rows


async def test_the_relay_serves_meters_and_records_on_postgres(
    make_relay: RelayFactory, upstream: Upstream, postgres_schema_url: str,
) -> None:
    relay = await make_relay(upstream, database_url=postgres_schema_url)
    store = relay.services.store
    assert isinstance(store, PostgresStore)
    ws = relay.boot.workspace.id
    await relay.add_guardrail("enforce", [{"id": "no-email", "categories": ["email"],
                                           "action": "block", "on": "input"}])
    client = openai.AsyncOpenAI(base_url=relay.base_url, api_key=relay.key, max_retries=0)
    try:
        done = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}])
        assert done.choices[0].message.content == "You said: hello"
        with pytest.raises(openai.APIStatusError):
            await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "mail me at jo@example.com"}])
    finally:
        await client.close()
    await relay.services.access.refresh()  # writes the usage summed so far
    await store.flush()
    metered = await raw_rows(store, "SELECT key_id, tokens FROM usage")
    assert [key for key, _ in metered] == [relay.boot.key_id] and metered[0][1] > 0
    bucket = (relay.boot.key_id, "total")
    before = (await store.usage([bucket]))[bucket]
    await store.add_usage([UsageDelta(relay.boot.key_id, "total", 1)])
    assert (await store.usage([bucket]))[bucket] == before + 1
    events = await store.list_events(ws, "guardrail")
    assert events and [e["seq"] for e in events] == list(range(1, len(events) + 1))
    async with aiohttp.ClientSession() as http, \
            http.get(f"{relay.admin_url}/readyz") as ready:
        assert ready.status == 200 and (await ready.json())["store"] == "ok"
