"""`orca-relay firewall …` commands (until the admin API manages firewall policies)."""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from relay.cliutil import (
    CommandError,
    StoreRunner,
    cli_actor,
    emit,
    in_workspace,
    json_argument,
)
from relay.firewall.inspect import request_subjects, response_subjects
from relay.firewall.policy import (
    MODES,
    PolicyError,
    load_policy,
    policy_view,
    preset_info,
    validate_document,
)
from relay.store.base import AuditDraft, FirewallPolicyRecord, Store, new_id, rfc3339, utc_now


def _document(text: str) -> dict[str, Any]:
    """A policy document from JSON, @FILE.json or @FILE.toml, validated."""
    if text.startswith("@") and text.endswith(".toml"):
        try:
            raw: Any = tomllib.loads(Path(text[1:]).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise CommandError(f"--policy: cannot read {text[1:]} ({exc})") from None
    else:
        raw = json_argument("--policy", text)
    try:
        return validate_document(raw)
    except PolicyError as exc:
        raise CommandError(f"--policy: {exc}") from None


def run_create(args: argparse.Namespace, with_store: StoreRunner) -> int:
    now = rfc3339(utc_now())
    record = FirewallPolicyRecord(new_id("fw"), args.workspace, args.name, args.mode,
                                  _document(args.policy), "user", now, now)

    audit = AuditDraft(args.workspace, cli_actor(), "firewall.create", record.id,
                       after=policy_view)
    made = with_store(args, in_workspace(
        args.workspace, lambda store: store.create_firewall_policy(record, audit=audit)))
    emit(args, policy_view(made), f"created firewall policy {made.id} ({made.mode})")
    return 0


def run_list(args: argparse.Namespace, with_store: StoreRunner) -> int:
    records = with_store(args, lambda s: s.list_firewall_policies(args.workspace))
    if args.json:
        emit(args, {"data": [policy_view(p) for p in records]}, "")
        return 0
    for p in records:
        rules = len(p.document.get("rules", []))
        sys.stdout.write(f"{p.id}  {p.name}  {p.mode}  {rules} rules  "
                         f"default {p.document.get('default')}\n")
    return 0


def run_update(args: argparse.Namespace, with_store: StoreRunner) -> int:
    document = _document(args.policy) if getattr(args, "policy", None) else None
    async def action(store: Store) -> FirewallPolicyRecord | None:
        current = next((p for p in await store.list_firewall_policies()
                        if p.id == args.policy_id), None)
        if current is None:
            return None
        return await store.update_firewall_policy(
            current.id, name=getattr(args, "name", None), mode=getattr(args, "mode", None),
            document=document, audit=AuditDraft(
                current.workspace_id, cli_actor(), "firewall.update", current.id,
                before=policy_view(current), after=policy_view))

    updated = with_store(args, action)
    if updated is None:
        raise CommandError(f"no firewall policy {args.policy_id}")
    emit(args, policy_view(updated), f"{updated.id}: {updated.name}, mode {updated.mode}")
    return 0


def run_presets(args: argparse.Namespace) -> int:
    presets = preset_info()
    if args.json:
        emit(args, {"data": presets}, "")
        return 0
    for preset in presets:
        sys.stdout.write(f"{preset['name']}: {preset['description']}\n")
    return 0


def run_check(args: argparse.Namespace) -> int:
    """Dry run: decide a request (and optionally an answer) against a policy file."""
    try:
        policy = load_policy(_document(args.policy), id="check", workspace_id="-",
                             name="check", mode="enforce")
    except PolicyError as exc:
        raise CommandError(f"--policy: {exc}") from None
    body = json_argument("--request", args.request)
    if not isinstance(body, dict):
        raise CommandError("--request: must be a JSON object (a request body)")
    subjects = request_subjects(body)
    if args.response:
        subjects += response_subjects(json_argument("--response", args.response))
    decisions = []
    for subject in subjects:
        decision = policy.decide(subject)
        decisions.append({"point": subject.point, "tool": subject.tool,
                          "host": subject.host.name if subject.host else None,
                          "path": subject.path, "verdict": decision.verdict,
                          "rule_id": decision.rule_id})
    denied = any(d["verdict"] == "deny" for d in decisions)
    lines = [f"{d['verdict']:5}  {d['point']:15}  {d['tool'] or '-'}  {d['host'] or ''}  "
             f"({d['rule_id'] or 'default'})" for d in decisions]
    emit(args, {"denied": denied, "decisions": decisions}, "\n".join(lines) or "no subjects")
    return 3 if denied else 0


def add_commands(
    sub: Any, store_options: Callable[[argparse.ArgumentParser], None],
    bind: Callable[[Callable[[argparse.Namespace, StoreRunner], int]], Any],
) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print one JSON object")
        store_options(p)

    policy_help = ("the policy document: JSON, @FILE.json or @FILE.toml "
                   "(policies/firewall/README.md)")
    group = sub.add_parser("firewall", help="manage firewall policies").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    p = group.add_parser("create", help="create a firewall policy",
                         description="Create a firewall policy in a workspace. Every policy "
                         "of a workspace decides all of its relay traffic.")
    p.add_argument("--workspace", required=True, metavar="ID")
    p.add_argument("--name", required=True)
    p.add_argument("--policy", required=True, metavar="JSON|@FILE", help=policy_help)
    p.add_argument("--mode", choices=MODES, default="shadow",
                   help="shadow records decisions only; enforce denies (default shadow)")
    common(p)
    p.set_defaults(func=bind(run_create))
    p = group.add_parser("list", help="list a workspace's firewall policies",
                         description="List a workspace's firewall policies.")
    p.add_argument("--workspace", required=True, metavar="ID")
    common(p)
    p.set_defaults(func=bind(run_list))
    p = group.add_parser("set-mode", help="switch shadow / enforce",
                         description="Switch a firewall policy between shadow and enforce.")
    p.add_argument("policy_id", metavar="POLICY_ID")
    p.add_argument("mode", choices=MODES)
    common(p)
    p.set_defaults(func=bind(run_update))
    p = group.add_parser("update", help="replace a policy's document or name",
                         description="Replace a firewall policy's document and/or name; "
                         "its mode is unchanged.")
    p.add_argument("policy_id", metavar="POLICY_ID")
    p.add_argument("--policy", metavar="JSON|@FILE", help=policy_help)
    p.add_argument("--name")
    common(p)
    p.set_defaults(func=bind(run_update))
    p = group.add_parser("presets", help="list the named rule presets",
                         description="List the presets a rule can reference with "
                         '{"preset": NAME, …}.')
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_presets)
    p = group.add_parser("check", help="dry-run a policy on a request body",
                         description="Decide every subject of a request body (and of an "
                         "answer) against a policy document, without a store or a relay. "
                         "Exit 3 when anything is denied.")
    p.add_argument("--policy", required=True, metavar="JSON|@FILE", help=policy_help)
    p.add_argument("--request", required=True, metavar="JSON|@FILE")
    p.add_argument("--response", metavar="JSON|@FILE")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_check)
