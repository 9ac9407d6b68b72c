"""The command line as a user runs it: real processes, --help everywhere, --json output."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from relay.cli import build_parser


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay", *args], input=stdin, capture_output=True, text=True,
        timeout=60,
    )


def _commands() -> list[list[str]]:
    """Every command and sub-command the parser knows, found by walking it."""
    found: list[list[str]] = []

    def walk(parser: object, prefix: list[str]) -> None:
        for action in getattr(parser, "_actions", []):
            choices = getattr(action, "choices", None)
            if isinstance(choices, dict):
                for name, sub in choices.items():
                    found.append([*prefix, name])
                    walk(sub, [*prefix, name])

    walk(build_parser(), [])
    return found


def test_every_command_has_help() -> None:
    commands = _commands()
    assert ["serve"] in commands and ["key", "revoke"] in commands
    assert ["mock-upstream"] in commands
    for command in [[], *commands]:
        result = run(*command, "--help")
        assert result.returncode == 0, command
        assert "usage: orca-relay" in result.stdout


def test_workspace_user_key_lifecycle(tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path)]
    ws = orjson.loads(run("workspace", "create", "acme", "--plan", "paid", "--json", *d).stdout)
    assert ws["id"].startswith("ws_") and ws["plan"] == "paid"
    user = run("user", "create", "Ops@Example.com", "--workspace", ws["id"], "--role", "admin",
               "--json", *d)
    made = orjson.loads(user.stdout)
    assert made["email"] == "ops@example.com" and len(made["password"]) >= 16
    piped = run("user", "create", "m@example.com", "--workspace", ws["id"], "--role", "member",
                "--password-stdin", "--json", *d, stdin="correct horse\n")
    assert "password" not in orjson.loads(piped.stdout)
    key = orjson.loads(run("key", "create", "--workspace", ws["id"], "--name", "ci",
                           "--quota-tokens", "1000", "--quota-period", "day", "--json",
                           *d).stdout)
    assert key["key"].startswith("sk-orca-") and key["quota_tokens"] == 1000
    listed = orjson.loads(run("key", "list", "--workspace", ws["id"], "--json", *d).stdout)
    assert [k["id"] for k in listed["data"]] == [key["id"]]
    assert key["key"] not in run("key", "list", "--workspace", ws["id"], *d).stdout
    revoked = orjson.loads(run("key", "revoke", key["id"], "--json", *d).stdout)
    assert revoked["revoked_at"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["key", "create", "--workspace", "ws_nope"], "no workspace ws_nope"),
        (["key", "revoke", "key_nope"], "no relay key key_nope"),
        (["key", "create", "--workspace", "ws_x", "--quota-tokens", "5"], "go together"),
        (["user", "create", "a@b.c", "--workspace", "ws_nope", "--role", "admin"],
         "no workspace"),
    ],
)
def test_errors_exit_1_with_a_reason(tmp_path: Path, args: list[str], message: str) -> None:
    result = run(*args, "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert message in result.stderr


def test_bad_configuration_exits_2(tmp_path: Path) -> None:
    result = run("key", "list", "--workspace", "w", "--config", str(tmp_path / "none.toml"))
    assert result.returncode == 2 and "configuration error" in result.stderr


def test_scan_reads_jsonl_and_writes_one_line_per_input() -> None:
    lines = [
        {"text": "mail alice@example.com now"},
        {"text": "nothing here"},
        {"text": "ping a\u200bl\u200dice@example.com"},
    ]
    stdin = "".join(orjson.dumps(line).decode() + "\n" for line in lines) + "not json\n"
    result = run("scan", stdin=stdin)
    assert result.returncode == 1  # the last line was malformed
    out = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert len(out) == 4
    (email,) = out[0]["findings"]
    assert (email["start"], email["end"], email["category"]) == (5, 22, "pii")
    assert out[1] == {"findings": []}
    (hidden,) = out[2]["findings"]
    assert lines[2]["text"][hidden["start"] : hidden["end"]] == "a\u200bl\u200dice@example.com"
    assert out[3]["error"]["line"] == 4


def test_guardrail_commands(tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path)]
    ws = orjson.loads(run("workspace", "create", "acme", "--json", *d).stdout)["id"]
    rules = '[{"id": "r1", "categories": ["secret"], "action": "block", "on": "input"}]'
    made = orjson.loads(run("guardrail", "create", "--workspace", ws, "--name", "g",
                            "--rules", rules, "--json", *d).stdout)
    assert (made["mode"], made["is_default"], made["rules"][0]["on"]) == ("observe", False,
                                                                          "input")
    assert orjson.loads(run("guardrail", "set-mode", made["id"], "enforce", "--json",
                            *d).stdout)["mode"] == "enforce"
    assert orjson.loads(run("guardrail", "set-default", made["id"], "--json",
                            *d).stdout)["is_default"] is True
    listed = orjson.loads(run("guardrail", "list", "--workspace", ws, "--json", *d).stdout)
    assert [g["id"] for g in listed["data"]] == [made["id"]]
    key = orjson.loads(run("key", "create", "--workspace", ws, "--json", *d).stdout)
    bound = orjson.loads(run("key", "set-guardrail", key["id"], made["id"], "--json",
                             *d).stdout)
    assert bound["guardrail_id"] == made["id"]
    bad = run("guardrail", "create", "--workspace", ws, "--name", "g", "--rules",
              '[{"id": "r", "detectors": ["nope"], "action": "flag"}]', *d)
    assert bad.returncode == 1 and "unknown name 'nope'" in bad.stderr
    assert run("key", "set-guardrail", key["id"], "gr_nope", *d).returncode == 1


def test_cli_changes_land_in_the_audit_trail(tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path)]
    ws = orjson.loads(run("workspace", "create", "acme", "--json", *d).stdout)["id"]
    key = orjson.loads(run("key", "create", "--workspace", ws, "--json", *d).stdout)
    run("key", "revoke", key["id"], *d)
    intact = orjson.loads(run("audit", "verify", "--json", *d).stdout)
    assert intact["intact"] is True and intact["entries"] == 2
    with sqlite3.connect(tmp_path / "orca.db") as conn:
        actions = conn.execute("SELECT action, actor FROM audit_log ORDER BY seq").fetchall()
        assert [a for a, _ in actions] == ["key.create", "key.revoke"]
        assert all(actor.startswith("cli") for _, actor in actions)
        conn.execute("UPDATE audit_log SET body = replace(body, 'key.revoke', 'key.update')")
    broken = run("audit", "verify", *d)
    assert broken.returncode == 1 and "NOT intact" in broken.stdout


def test_signing_key_rotation_keeps_old_public_keys(tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path)]
    first = orjson.loads(run("signing-key", "rotate", "--json", *d).stdout)
    second = orjson.loads(run("signing-key", "rotate", "--json", *d).stdout)
    assert second["retired_kid"] == first["kid"] != second["kid"]
    assert set(second["kids"]) == {first["retired_kid"], first["kid"], second["kid"]}
    key = tmp_path / "signing" / "ed25519.pem"
    assert key.stat().st_mode & 0o777 == 0o600
