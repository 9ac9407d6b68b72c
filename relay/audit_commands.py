"""`orca-relay audit …` commands: check the audit trail's hash chains."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from relay.cliutil import StoreRunner, emit, in_workspace
from relay.store.audit import verify_audit_chain
from relay.store.base import Store


def run_verify(args: argparse.Namespace, with_store: StoreRunner) -> int:
    """Exit 0 when every chain checked is intact, 1 with each problem printed."""

    async def chain(store: Store) -> list[dict[str, Any]]:
        return await store.audit_chain(args.workspace)

    entries = with_store(args, in_workspace(args.workspace, chain) if args.workspace else chain)
    problems = verify_audit_chain(entries)
    workspaces = len({entry.get("workspace_id") for entry in entries})
    if args.json:
        emit(args, {"intact": not problems, "entries": len(entries), "workspaces": workspaces,
                    "problems": problems}, "")
    elif problems:
        for problem in problems:
            sys.stdout.write(problem + "\n")
        sys.stdout.write(f"audit trail NOT intact: {len(problems)} problem(s) in "
                         f"{len(entries)} entries\n")
    else:
        sys.stdout.write(f"audit trail intact: {len(entries)} entries in {workspaces} "
                         "workspace(s)\n")
    return 1 if problems else 0


def add_commands(
    sub: Any, store_options: Callable[[argparse.ArgumentParser], None],
    bind: Callable[[Callable[[argparse.Namespace, StoreRunner], int]], Any],
) -> None:
    group = sub.add_parser("audit", help="check the audit trail").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    p = group.add_parser("verify", help="verify the audit trail's hash chains",
                         description="Recompute every audit entry's hash and check each "
                         "workspace's chain: a changed, deleted or reordered entry is "
                         "reported. Exit 0 when intact, 1 with each problem printed.")
    p.add_argument("--workspace", metavar="ID", help="one workspace (default: all)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    store_options(p)
    p.set_defaults(func=bind(run_verify))
