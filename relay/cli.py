"""`orca-relay` command line: parse → call → print. Every command has --help; every
command that creates something takes --json and then prints one JSON object."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson

from relay import __version__
from relay.cliutil import CommandError, cli_actor, emit, in_workspace
from relay.config import ConfigError, Settings, load_settings
from relay.store.base import (
    PLANS,
    QUOTA_PERIODS,
    ROLES,
    AuditDraft,
    RelayKey,
    Store,
    StoreError,
    open_store,
)

T = TypeVar("T")
EXIT_USAGE = 2


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    return load_settings(
        args.config,
        overrides={"data_dir": args.data_dir, "database_url": args.database_url, **overrides},
    )


def _with_store(args: argparse.Namespace, action: Callable[[Store], Awaitable[T]]) -> T:
    async def run() -> T:
        store = open_store(_settings(args).effective_database_url)
        await store.open()
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(run())


def key_view(key: RelayKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "workspace_id": key.workspace_id,
        "name": key.name,
        "prefix": key.prefix,
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
        "quota_tokens": key.quota_tokens,
        "quota_period": key.quota_period,
        "guardrail_id": key.guardrail_id,
    }


# ---- commands ------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from relay.server import serve

    settings = _settings(
        args,
        relay_listen=args.relay_listen,
        admin_listen=args.admin_listen,
        upstream_url=args.upstream_url,
        workers=args.workers,
        log_level=args.log_level,
    )
    return serve(settings)


def cmd_workspace_create(args: argparse.Namespace) -> int:
    ws = _with_store(args, lambda s: s.create_workspace(args.name, args.plan))
    emit(args, {"id": ws.id, "name": ws.name, "plan": ws.plan},
          f"created workspace {ws.id} ({ws.name}, plan {ws.plan})")
    return 0


def cmd_user_create(args: argparse.Namespace) -> int:
    from relay.accounts import create_user, generate_password

    generated = not args.password_stdin
    password = generate_password() if generated else sys.stdin.readline().rstrip("\n")
    if not password:
        raise CommandError("--password-stdin: no password on standard input")

    async def action(store: Store) -> Any:
        if await store.get_workspace(args.workspace) is None:
            raise CommandError(f"--workspace: no workspace {args.workspace}")
        return await create_user(store, args.email, args.workspace, args.role, password)

    user = _with_store(args, action)
    out: dict[str, Any] = {"id": user.id, "email": user.email}
    text = f"created user {user.id} ({user.email}, {args.role} of {args.workspace})"
    if generated:
        out["password"] = password
        text += f"\n  password (shown once): {password}"
    emit(args, out, text)
    return 0


def cmd_key_create(args: argparse.Namespace) -> int:
    from relay.proxy.access import new_relay_key

    if (args.quota_tokens is None) != (args.quota_period is None):
        raise CommandError("--quota-tokens and --quota-period go together")
    if args.quota_tokens is not None and args.quota_tokens < 0:
        raise CommandError("--quota-tokens must be 0 or more")
    record, secret = new_relay_key(
        args.workspace, args.name, args.quota_tokens, args.quota_period
    )

    audit = AuditDraft(args.workspace, cli_actor(), "key.create", record.id, after=key_view)
    key = _with_store(args, in_workspace(
        args.workspace, lambda store: store.create_key(record, audit=audit)))
    emit(args, {**key_view(key), "key": secret},
          f"created relay key {key.id} in {key.workspace_id}\n  {secret}   (shown once)")
    return 0


def cmd_key_list(args: argparse.Namespace) -> int:
    keys = _with_store(args, lambda s: s.list_keys(args.workspace))
    if args.json:
        emit(args, {"data": [key_view(k) for k in keys]}, "")
        return 0
    for k in keys:
        state = f"revoked {k.revoked_at}" if k.revoked_at else "active"
        quota = f"{k.quota_tokens}/{k.quota_period}" if k.quota_tokens is not None else "-"
        sys.stdout.write(f"{k.id}  {k.prefix}…  {k.name}  quota {quota}  {state}\n")
    return 0


def cmd_key_revoke(args: argparse.Namespace) -> int:
    async def action(store: Store) -> RelayKey | None:
        key = await store.get_key(args.key_id)
        if key is None:
            return None
        return await store.revoke_key(key.id, audit=AuditDraft(
            key.workspace_id, cli_actor(), "key.revoke", key.id, before=key_view(key),
            after=key_view))

    key = _with_store(args, action)
    if key is None:
        raise CommandError(f"no relay key {args.key_id}")
    emit(args, key_view(key), f"revoked {key.id} at {key.revoked_at}")
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    """JSONL in ({"text": …} per line), one JSONL line out per input line."""
    from relay.guardrail.detectors import (
        DetectorError,
        DetectorSet,
        default_detector_set,
        load_detectors,
    )
    from relay.guardrail.scan import scan

    try:
        detectors = (
            DetectorSet(load_detectors(args.detectors)) if args.detectors
            else default_detector_set()
        )
    except DetectorError as exc:
        raise CommandError(str(exc)) from None
    failed = False
    for number, line in enumerate(sys.stdin, start=1):
        try:
            item = orjson.loads(line)
            text = item["text"] if isinstance(item, dict) else None
            if not isinstance(text, str):
                raise ValueError('expected an object with a string "text"')
        except (ValueError, KeyError) as exc:
            failed = True
            out: dict[str, Any] = {"error": {"line": number, "message": str(exc)}}
        else:
            out = {"findings": [
                {"start": f.start, "end": f.end, "detector": f.detector, "category": f.category}
                for f in scan(text, detectors)
            ]}
        sys.stdout.write(orjson.dumps(out).decode() + "\n")
    return 1 if failed else 0


def cmd_key_set_guardrail(args: argparse.Namespace) -> int:
    guardrail = None if args.guardrail_id == "none" else args.guardrail_id

    async def action(store: Store) -> RelayKey:
        key = await store.get_key(args.key_id)
        if key is None:
            raise CommandError(f"no relay key {args.key_id}")
        if guardrail is not None and guardrail not in {
            g.id for g in await store.list_guardrails(key.workspace_id)
        }:
            raise CommandError(f"no guardrail {guardrail} in the key's workspace")
        updated = await store.update_key(key.id, guardrail_id=(guardrail,), audit=AuditDraft(
            key.workspace_id, cli_actor(), "key.update", key.id, before=key_view(key),
            after=key_view))
        assert updated is not None
        return updated

    key = _with_store(args, action)
    emit(args, key_view(key), f"{key.id}: guardrail {key.guardrail_id or 'workspace default'}")
    return 0


def cmd_signing_key_rotate(args: argparse.Namespace) -> int:
    from relay.compliance.signing import KeyRing

    ring = KeyRing(_settings(args).effective_signing_key_file)
    old = ring.current_kid
    new = ring.rotate()
    emit(args, {"retired_kid": old, "kid": new, "kids": ring.kids()},
         f"signing key rotated: {old} retired (its public key stays published), now {new}; "
         "restart running relays to sign with it")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    version = _with_store(args, lambda store: store.schema_version())
    emit(args, {"schema_version": version}, f"store migrated: schema version {version}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from relay.demo import main as demo_main

    return demo_main(args.data_dir, sys.stdout)


def cmd_mock_upstream(args: argparse.Namespace) -> int:
    from relay.testing import MockConfig, run_mock_upstream

    config = MockConfig(chunks=args.chunks, chunk_delay=args.chunk_delay_ms / 1000,
                        reply=args.reply, fault=args.fault, tool_calls=args.tool_calls)
    try:
        asyncio.run(run_mock_upstream(args.host, args.port, config))
    except KeyboardInterrupt:
        pass
    return 0


# ---- parser --------------------------------------------------------------------------


def _store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML settings file (env vars win)")
    p.add_argument("--data-dir", help="state directory (ORCA_DATA_DIR, default ./.orca)")
    p.add_argument("--database-url", help="store URL (ORCA_DATABASE_URL, default SQLite)")


def _json_and_store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _store_options(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orca-relay",
        description="OpenAI-compatible enforcement gateway: relay, guardrails, firewall, "
        "metering and signed compliance evidence.",
    )
    parser.add_argument("--version", action="version", version=f"orca-relay {__version__}")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                        help="log verbosity on stderr (ORCA_LOG_LEVEL, default info)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the relay and admin listeners",
                       description="Run the relay (ORCA_RELAY_LISTEN) and admin "
                       "(ORCA_ADMIN_LISTEN) listeners. Settings: defaults < --config TOML < "
                       "ORCA_* environment < these flags.")
    _store_options(p)
    p.add_argument("--relay-listen", metavar="HOST:PORT")
    p.add_argument("--admin-listen", metavar="HOST:PORT")
    p.add_argument("--upstream-url", metavar="URL", help="upstream OpenAI base URL incl. /v1")
    p.add_argument("--workers", type=int, metavar="N", help="processes sharing the ports")
    p.set_defaults(func=cmd_serve)

    ws = sub.add_parser("workspace", help="manage workspaces").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    p = ws.add_parser("create", help="create a workspace", description="Create a workspace.")
    p.add_argument("name")
    p.add_argument("--plan", choices=PLANS, default="free")
    _json_and_store_options(p)
    p.set_defaults(func=cmd_workspace_create)

    us = sub.add_parser("user", help="manage users").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    p = us.add_parser("create", help="create a user in a workspace",
                      description="Create a user; without --password-stdin a password is "
                      "generated and printed once.")
    p.add_argument("email")
    p.add_argument("--workspace", required=True, metavar="ID")
    p.add_argument("--role", choices=ROLES, required=True)
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    _json_and_store_options(p)
    p.set_defaults(func=cmd_user_create)

    ks = sub.add_parser("key", help="manage relay keys").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    p = ks.add_parser("create", help="create a relay key (the secret is shown once)",
                      description="Create a relay key sk-orca-…; only its hash is stored.")
    p.add_argument("--workspace", required=True, metavar="ID")
    p.add_argument("--name", default="default")
    p.add_argument("--quota-tokens", type=int, metavar="N", help="token quota per period")
    p.add_argument("--quota-period", choices=QUOTA_PERIODS)
    _json_and_store_options(p)
    p.set_defaults(func=cmd_key_create)
    p = ks.add_parser("list", help="list a workspace's relay keys",
                      description="List relay keys (never their secrets).")
    p.add_argument("--workspace", required=True, metavar="ID")
    _json_and_store_options(p)
    p.set_defaults(func=cmd_key_list)
    p = ks.add_parser("revoke", help="revoke a relay key",
                      description="Revoke a relay key; relays refuse it within a second.")
    p.add_argument("key_id", metavar="KEY_ID")
    _json_and_store_options(p)
    p.set_defaults(func=cmd_key_revoke)
    p = ks.add_parser("set-guardrail", help="give a key its own guardrail (or none)",
                      description="Override the workspace default guardrail for one key; "
                      "'none' returns the key to the workspace default.")
    p.add_argument("key_id", metavar="KEY_ID")
    p.add_argument("guardrail_id", metavar="GUARDRAIL_ID|none")
    _json_and_store_options(p)
    p.set_defaults(func=cmd_key_set_guardrail)

    from relay.audit_commands import add_commands as add_audit_commands
    from relay.firewall.commands import add_commands as add_firewall_commands
    from relay.guardrail.commands import add_commands as add_guardrail_commands
    from relay.verify_command import add_commands as add_verify_commands

    add_guardrail_commands(sub, _store_options, lambda run: lambda a: run(a, _with_store))
    add_firewall_commands(sub, _store_options, lambda run: lambda a: run(a, _with_store))
    add_audit_commands(sub, _store_options, lambda run: lambda a: run(a, _with_store))
    add_verify_commands(sub)

    p = sub.add_parser("signing-key", help="manage the report-signing key").add_subparsers(
        dest="action", required=True, metavar="ACTION").add_parser(
        "rotate", help="start signing reports with a new key",
        description="Retire the report-signing key (its public key stays published at "
        "/api/public/compliance/pubkey, so earlier reports still verify) and create a new "
        "one. Running relays sign with the new key after a restart.")
    _json_and_store_options(p)
    p.set_defaults(func=cmd_signing_key_rotate)

    p = sub.add_parser("migrate", help="apply the store's migrations and exit",
                       description="Open the store named by ORCA_DATABASE_URL (or the "
                       "embedded SQLite), apply any migration it lacks, print its schema "
                       "version. The Kubernetes migration Job runs this before a rollout.")
    _json_and_store_options(p)
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("demo", help="walk the spec: install SOC 2, observe, go live, block",
                       description="Start a mock upstream and the relay on the embedded "
                       "default in a fresh data directory, then install the SOC 2 pack, "
                       "send traffic that trips its controls, show readiness, go live and "
                       "show the same traffic blocked, with real HTTP calls.")
    p.add_argument("--data-dir", help="an empty directory to keep the demo's state in "
                   "(default: a temporary one, removed afterwards)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("scan", help="find PII and secrets in JSONL text on stdin",
                       description='Read JSONL on stdin ({"text": ...} per line) and write '
                       'one JSONL line per input: {"findings": [{"start", "end", "detector", '
                       '"category"}]} with offsets in Python characters of the text, end '
                       "exclusive. The relay's own detectors; exit 1 if a line was malformed.")
    p.add_argument("--detectors", type=Path, metavar="DIR",
                   help="a detector directory instead of the shipped policies/detectors")
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("mock-upstream", help="run a fast local OpenAI-compatible upstream",
                       description="A mock OpenAI-compatible upstream for demos, tests and "
                       "benchmarks. Per-request x-mock-* headers override the flags.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("--chunks", type=int, default=0, help="content chunks per stream (0: words)")
    p.add_argument("--chunk-delay-ms", type=float, default=0.0)
    p.add_argument("--reply", help="fixed assistant reply (default: echo the user)")
    p.add_argument("--fault", help="slow:S | status:CODE | garbage | drop:N | stall:N")
    p.add_argument("--tool-calls", metavar="JSON",
                   help='answer chats with these calls: [{"name": N, "arguments": "{…}"}]')
    p.set_defaults(func=cmd_mock_upstream)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level or os.environ.get("ORCA_LOG_LEVEL", "info"))
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        sys.stderr.write(f"orca-relay: configuration error: {exc}\n")
        return EXIT_USAGE
    except (CommandError, StoreError) as exc:
        sys.stderr.write(f"orca-relay: {exc}\n")
        return 1
