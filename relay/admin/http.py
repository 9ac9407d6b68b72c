"""What every admin handler shares: JSON bodies checked field by field, cursor pages,
JSON answers. Errors are the relay's own (relay/errors.py), so the console and the
OpenAI SDKs read the same error shape everywhere.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson
from aiohttp import web

from relay.errors import InvalidRequest
from relay.proxy.validation import parse_json_object, read_body

T = TypeVar("T")
MAX_ADMIN_BODY = 1024 * 1024
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status,
                        content_type="application/json")


async def read_object(request: web.Request, allowed: Sequence[str]) -> dict[str, Any]:
    """The request's JSON object body; any field not in `allowed` is a 400 naming it."""
    raw = await read_body(request, MAX_ADMIN_BODY)
    body = parse_json_object(raw, request.content_type, request.charset)
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r}; allowed: {', '.join(allowed)}",
                             param=unknown[0], code="unknown_parameter")
    return body


def field(body: dict[str, Any], name: str, kind: type[T] | tuple[type, ...], *,
          required: bool = False, default: Any = None) -> Any:
    """body[name] checked against `kind` (bool is never an int here); 400 naming it."""
    if name not in body or body[name] is None:
        if required:
            raise InvalidRequest(f"{name} is required", param=name,
                                 code="missing_required_parameter")
        return default
    value = body[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        value_ok = False
    else:
        value_ok = isinstance(value, kinds)
    if not value_ok:
        names = " or ".join(k.__name__.replace("str", "string").replace("int", "integer")
                            .replace("dict", "object").replace("list", "array")
                            for k in kinds)
        raise InvalidRequest(f"{name} must be {names}", param=name, code="invalid_type")
    return value


def choice(body: dict[str, Any], name: str, allowed: Sequence[str], *,
           default: str | None = None) -> str | None:
    value = field(body, name, str, default=default)
    if value is not None and value not in allowed:
        raise InvalidRequest(f"{name} must be one of {', '.join(allowed)}", param=name,
                             code="invalid_value")
    return value  # type: ignore[no-any-return]


def limit_of(request: web.Request) -> int:
    raw = request.query.get("limit", str(DEFAULT_LIMIT))
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_LIMIT}", param="limit",
                             code="invalid_value")
    return int(raw)


def encode_cursor(value: str | int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


def decode_cursor(request: web.Request, kind: type[T]) -> T | None:
    raw = request.query.get("cursor")
    if not raw:
        return None
    try:
        value = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError):
        value = None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InvalidRequest("cursor is not one this API gave out", param="cursor",
                             code="invalid_cursor")
    return value


def page(request: web.Request, items: Sequence[T], view: Callable[[T], dict[str, Any]],
         key: Callable[[T], str]) -> web.Response:
    """One page of a small list kept whole in memory (keys, guardrails, policies), in
    `key` order; the cursor is the last key shown."""
    limit = limit_of(request)
    after = decode_cursor(request, str)
    ordered = sorted(items, key=key)
    if after is not None:
        ordered = [item for item in ordered if key(item) > after]
    shown = ordered[:limit]
    more = len(ordered) > limit
    return json_response({"data": [view(item) for item in shown],
                          "next_cursor": encode_cursor(key(shown[-1])) if more else None})
