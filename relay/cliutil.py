"""What every `orca-relay` command module shares: its error, its printer, its store runner."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson

from relay.store.base import Store

StoreRunner = Callable[[argparse.Namespace, Callable[[Store], Any]], Any]
T = TypeVar("T")


class CommandError(Exception):
    """A command could not do what was asked; the message says why (exit 1)."""


def emit(args: argparse.Namespace, obj: dict[str, Any], text: str) -> None:
    """One JSON object with --json, else the human line."""
    if getattr(args, "json", False):
        sys.stdout.write(orjson.dumps(obj).decode() + "\n")
    else:
        sys.stdout.write(text + "\n")


def json_argument(option: str, text: str) -> Any:
    """A JSON option value, or the JSON file named after `@`."""
    try:
        raw = Path(text[1:]).read_bytes() if text.startswith("@") else text.encode()
    except OSError as exc:
        raise CommandError(f"{option}: cannot read {text[1:]} ({exc.strerror})") from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CommandError(f"{option}: not JSON ({exc})") from None


def in_workspace(
    workspace_id: str, create: Callable[[Store], Awaitable[T]]
) -> Callable[[Store], Awaitable[T]]:
    """A store action that first checks the workspace named by --workspace exists."""

    async def action(store: Store) -> T:
        if await store.get_workspace(workspace_id) is None:
            raise CommandError(f"--workspace: no workspace {workspace_id}")
        return await create(store)

    return action


def cli_actor() -> str:
    """Who the audit trail names for a change made on the command line."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no user name in this environment (e.g. a bare container)
        return "cli"
