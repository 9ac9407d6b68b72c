"""`orca-relay guardrail …` commands (until the admin API manages guardrails)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from relay.cliutil import (
    CommandError,
    StoreRunner,
    cli_actor,
    emit,
    in_workspace,
    json_argument,
)
from relay.guardrail.detectors import default_detector_set
from relay.guardrail.policy import MODES, GuardrailRuleError, guardrail_view, parse_rules
from relay.store.base import AuditDraft, GuardrailRecord, Store, new_id, rfc3339, utc_now


def _rules(text: str) -> list[dict[str, Any]]:
    rules = json_argument("--rules", text)
    try:
        parsed = parse_rules(rules, [d.id for d in default_detector_set().detectors])
    except GuardrailRuleError as exc:
        raise CommandError(f"--rules: {exc}") from None
    return [rule.as_dict() for rule in parsed]


def run_create(args: argparse.Namespace, with_store: StoreRunner) -> int:
    now = rfc3339(utc_now())
    record = GuardrailRecord(new_id("gr"), args.workspace, args.name, args.mode,
                             _rules(args.rules), args.default, "user", now, now)

    audit = AuditDraft(args.workspace, cli_actor(), "guardrail.create", record.id,
                       after=guardrail_view)
    made = with_store(args, in_workspace(
        args.workspace, lambda store: store.create_guardrail(record, audit=audit)))
    emit(args, guardrail_view(made), f"created guardrail {made.id} ({made.mode})")
    return 0


def run_list(args: argparse.Namespace, with_store: StoreRunner) -> int:
    records = with_store(args, lambda s: s.list_guardrails(args.workspace))
    if args.json:
        emit(args, {"data": [guardrail_view(g) for g in records]}, "")
        return 0
    for g in records:
        default = " default" if g.is_default else ""
        sys.stdout.write(f"{g.id}  {g.name}  {g.mode}{default}  {len(g.rules)} rules\n")
    return 0


def run_update(args: argparse.Namespace, with_store: StoreRunner) -> int:
    mode = getattr(args, "mode", None)
    is_default = True if getattr(args, "make_default", False) else None
    async def action(store: Store) -> GuardrailRecord | None:
        current = next((g for g in await store.list_guardrails() if g.id == args.guardrail_id),
                       None)
        if current is None:
            return None
        return await store.update_guardrail(current.id, mode=mode, is_default=is_default,
                                            audit=AuditDraft(
            current.workspace_id, cli_actor(), "guardrail.update", current.id,
            before=guardrail_view(current), after=guardrail_view))

    updated = with_store(args, action)
    if updated is None:
        raise CommandError(f"no guardrail {args.guardrail_id}")
    emit(args, guardrail_view(updated), f"{updated.id}: mode {updated.mode}"
           + (", workspace default" if updated.is_default else ""))
    return 0


def add_commands(
    sub: Any, store_options: Callable[[argparse.ArgumentParser], None],
    bind: Callable[[Callable[[argparse.Namespace, StoreRunner], int]], Any],
) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print one JSON object")
        store_options(p)

    group = sub.add_parser("guardrail", help="manage guardrails").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    p = group.add_parser("create", help="create a guardrail",
                         description="Create a guardrail. --rules is JSON (or @FILE): "
                         '[{"id": "r1", "categories": ["secret"], "action": "block", '
                         '"on": "input"}, …]; actions flag|mask|block, on input|output|both.')
    p.add_argument("--workspace", required=True, metavar="ID")
    p.add_argument("--name", required=True)
    p.add_argument("--rules", required=True, metavar="JSON|@FILE")
    p.add_argument("--mode", choices=MODES, default="observe")
    p.add_argument("--default", action="store_true", help="keys without an override use it")
    common(p)
    p.set_defaults(func=bind(run_create))
    p = group.add_parser("list", help="list a workspace's guardrails",
                         description="List a workspace's guardrails.")
    p.add_argument("--workspace", required=True, metavar="ID")
    common(p)
    p.set_defaults(func=bind(run_list))
    p = group.add_parser("set-mode", help="switch observe / enforce",
                         description="Switch a guardrail between observe and enforce.")
    p.add_argument("guardrail_id", metavar="GUARDRAIL_ID")
    p.add_argument("mode", choices=MODES)
    common(p)
    p.set_defaults(func=bind(run_update))
    p = group.add_parser("set-default", help="make it the workspace default",
                         description="Make a guardrail the default that keys inherit.")
    p.add_argument("guardrail_id", metavar="GUARDRAIL_ID")
    common(p)
    p.set_defaults(func=bind(run_update), make_default=True)
