"""Request body checks for /v1 routes: one precise 400 (or 413) per kind of bad input.

Only what the relay itself relies on is checked (JSON object, `model`, `messages` and
the fields that steer streaming and tools); other fields go to the upstream untouched,
because OpenAI adds parameters faster than any gateway could list them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from relay.errors import InvalidRequest, RequestTooLarge

Validator = Callable[[dict[str, Any]], None]


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    length = request.content_length
    if length is not None and length > max_bytes:
        raise RequestTooLarge(
            f"request body is {length} bytes; the limit is {max_bytes} (ORCA_MAX_BODY_BYTES)"
        )
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise RequestTooLarge(
            f"request body exceeds the limit of {max_bytes} bytes (ORCA_MAX_BODY_BYTES)"
        ) from None


def parse_json_object(raw: bytes, content_type: str, charset: str | None) -> dict[str, Any]:
    if content_type != "application/json":
        shown = content_type or "none"
        raise InvalidRequest(
            f"Content-Type must be application/json (got {shown})", code="invalid_content_type"
        )
    if charset is not None and charset.lower() not in ("utf-8", "utf8"):
        raise InvalidRequest(
            f"request body must be UTF-8 (Content-Type names charset {charset})",
            code="invalid_content_type",
        )
    if not raw:
        raise InvalidRequest("request body is empty; expected a JSON object", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise InvalidRequest(
                f"request body is not valid UTF-8 (byte offset {bad.start})", code="invalid_utf8"
            ) from None
        raise InvalidRequest(
            f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest(
            f"request body must be a JSON object, not {_json_type(body)}", code="invalid_body"
        )
    return body


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _wrong_type(param: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(
        f"'{param}' must be {expected}, not {_json_type(value)}", param=param, code="invalid_type"
    )


def _missing(param: str) -> InvalidRequest:
    return InvalidRequest(
        f"'{param}' is required", param=param, code="missing_required_parameter"
    )


def validate_model(body: dict[str, Any]) -> None:
    if "model" not in body:
        raise _missing("model")
    if not isinstance(body["model"], str):
        raise _wrong_type("model", "a string", body["model"])
    _check_optional(body, "stream", bool, "a boolean")
    _check_optional(body, "stream_options", dict, "an object")


def _check_optional(body: dict[str, Any], name: str, kind: type, expected: str) -> None:
    value = body.get(name)
    if value is not None and not isinstance(value, kind):
        raise _wrong_type(name, expected, value)


def validate_chat(body: dict[str, Any]) -> None:
    validate_model(body)
    if "messages" not in body:
        raise _missing("messages")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise _wrong_type("messages", "an array of message objects", messages)
    if not messages:
        raise InvalidRequest(
            "'messages' must contain at least one message", param="messages", code="invalid_value"
        )
    for index, message in enumerate(messages):
        # Fast path for the common shape; anything else gets the precise checks.
        if type(message) is dict and type(message.get("role")) is str:
            content = message.get("content")
            if content is None or type(content) is str:
                continue
        _validate_message(index, message)
    _check_optional(body, "tools", list, "an array")


def _validate_message(index: int, message: Any) -> None:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise _wrong_type(where, "an object", message)
    if "role" not in message:
        raise _missing(f"{where}.role")
    if not isinstance(message["role"], str):
        raise _wrong_type(f"{where}.role", "a string", message["role"])
    content = message.get("content")
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _wrong_type(f"{where}.content", "a string or an array of content parts", content)
    for part_index, part in enumerate(content):
        if not isinstance(part, dict):
            raise _wrong_type(f"{where}.content[{part_index}]", "an object", part)
