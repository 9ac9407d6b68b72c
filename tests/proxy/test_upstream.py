"""Header hygiene between client, relay and upstream."""

from __future__ import annotations

from multidict import CIMultiDict, CIMultiDictProxy

from relay.proxy.upstream import request_headers, response_headers


def test_request_headers_drop_hop_by_hop_credentials_and_connection_listed() -> None:
    client = {
        "Host": "relay.local",
        "Authorization": "Bearer sk-orca-secret",
        "Connection": "keep-alive, X-Hop",
        "X-Hop": "1",
        "Keep-Alive": "timeout=5",
        "Transfer-Encoding": "chunked",
        "TE": "trailers",
        "Upgrade": "h2c",
        "Content-Length": "10",
        "Cookie": "a=b",
        "OpenAI-Project": "proj_x",
        "Content-Type": "application/json",
        "User-Agent": "OpenAI/Python",
        "X-Stainless-Lang": "python",
    }
    out = request_headers(client, "sk-provider")
    assert out == {
        "Content-Type": "application/json",
        "User-Agent": "OpenAI/Python",
        "X-Stainless-Lang": "python",
        "Authorization": "Bearer sk-provider",
    }


def test_request_headers_without_a_provider_key_send_no_authorization() -> None:
    assert "Authorization" not in request_headers({"Authorization": "Bearer sk-orca-x"}, "")


def test_response_headers_drop_framing_and_keep_upstream_request_id_apart() -> None:
    upstream = CIMultiDictProxy(
        CIMultiDict(
            [
                ("Content-Type", "application/json"),
                ("Content-Length", "99"),
                ("Content-Encoding", "gzip"),
                ("Transfer-Encoding", "chunked"),
                ("Connection", "close, X-Upstream-Hop"),
                ("X-Upstream-Hop", "1"),
                ("x-request-id", "req_upstream"),
                ("Set-Cookie", "__cf_bm=abc"),
                ("openai-processing-ms", "12"),
                ("x-ratelimit-remaining-tokens", "100"),
            ]
        )
    )
    out = response_headers(upstream)
    assert dict(out) == {
        "Content-Type": "application/json",
        "x-upstream-request-id": "req_upstream",
        "openai-processing-ms": "12",
        "x-ratelimit-remaining-tokens": "100",
    }
