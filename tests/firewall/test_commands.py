"""`orca-relay firewall …` as a user runs it: real processes, a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.test_cli import run

POLICY = orjson.dumps({"schema": 1, "default": "allow", "rules": [
    {"id": "no-shell", "effect": "deny", "tools": ["shell*"]},
    {"preset": "no_private_egress"},
]}).decode()


def test_create_list_switch_and_update(tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path)]
    ws = orjson.loads(run("workspace", "create", "acme", "--json", *d).stdout)["id"]
    made = orjson.loads(run("firewall", "create", "--workspace", ws, "--name", "agents",
                            "--policy", POLICY, "--json", *d).stdout)
    assert (made["mode"], made["default"], made["source"]) == ("shadow", "allow", "user")
    assert [r.get("id", r.get("preset")) for r in made["rules"]] == [
        "no-shell", "no_private_egress"]
    switched = orjson.loads(run("firewall", "set-mode", made["id"], "enforce", "--json",
                                *d).stdout)
    assert switched["mode"] == "enforce"
    toml = tmp_path / "policy.toml"
    toml.write_text('schema = 1\ndefault = "deny"\n[[rules]]\nid = "search"\n'
                    'effect = "allow"\ntools = ["search"]\n')
    updated = orjson.loads(run("firewall", "update", made["id"], "--policy", f"@{toml}",
                               "--json", *d).stdout)
    assert (updated["default"], updated["mode"], len(updated["rules"])) == ("deny", "enforce", 1)
    listed = orjson.loads(run("firewall", "list", "--workspace", ws, "--json", *d).stdout)
    assert [p["id"] for p in listed["data"]] == [made["id"]]
    assert made["id"] in run("firewall", "list", "--workspace", ws, *d).stdout


def test_bad_policies_and_unknown_ids_exit_1_with_the_path(tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path)]
    ws = orjson.loads(run("workspace", "create", "acme", "--json", *d).stdout)["id"]
    bad = run("firewall", "create", "--workspace", ws, "--name", "x", "--policy",
              '{"schema": 1, "rules": [{"id": "r", "effect": "deny", "hosts": ["10.0.0.0/33"]}]}',
              *d)
    assert bad.returncode == 1 and "rules[0].hosts[0]" in bad.stderr
    assert run("firewall", "create", "--workspace", ws, "--name", "x", "--policy", "{",
               *d).returncode == 1
    missing = run("firewall", "set-mode", "fw_nope", "enforce", *d)
    assert missing.returncode == 1 and "no firewall policy fw_nope" in missing.stderr


def test_check_dry_runs_a_request_and_exits_3_on_deny(tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    request.write_bytes(orjson.dumps({"model": "m", "messages": [
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {
            "name": "fetch", "arguments": '{"url": "http://0x7f.1/admin"}'}}]}],
        "tools": [{"type": "function", "function": {"name": "search"}}]}))
    result = run("firewall", "check", "--policy", POLICY, "--request", f"@{request}", "--json")
    assert result.returncode == 3
    decisions = orjson.loads(result.stdout)["decisions"]
    assert [(d["point"], d["host"], d["verdict"]) for d in decisions] == [
        ("tool_definition", None, "allow"), ("history_call", None, "allow"),
        ("egress", "127.0.0.1", "deny")]
    fine = run("firewall", "check", "--policy", POLICY, "--request", '{"messages": []}')
    assert fine.returncode == 0 and fine.stdout.strip() == "no subjects"


def test_presets_are_listed() -> None:
    listed = orjson.loads(run("firewall", "presets", "--json").stdout)["data"]
    assert {p["name"] for p in listed} == {"no_private_egress", "tool_allowlist",
                                           "no_shell_tools"}
