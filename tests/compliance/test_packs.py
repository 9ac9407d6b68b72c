"""The compliance catalog (policies/packs/*.toml): the shipped packs load and hold what
they promise, and every way a pack file can be wrong is refused with file and field."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from relay.compliance.packs import (
    PACK_DIRECTORY,
    Control,
    Pack,
    PackError,
    catalog,
    load_catalog,
    load_pack,
)
from relay.firewall.egress import normalise_host
from relay.firewall.policy import load_policy
from relay.firewall.subjects import Subject
from relay.guardrail.detectors import default_detector_set
from relay.guardrail.policy import Guardrail, parse_rules

KNOWN = [d.id for d in default_detector_set().detectors]
SHIPPED = {"soc2", "hipaa", "pci-dss", "gdpr", "iso27001", "eu-ai-act"}


# -- the shipped catalog ---------------------------------------------------------------------


def test_real_catalog_loads_all_six_packs() -> None:
    packs = catalog()
    assert set(packs) == SHIPPED
    assert {p.stem for p in PACK_DIRECTORY.glob("*.toml")} == SHIPPED
    for pack_id, pack in packs.items():
        assert pack.id == pack_id
        assert pack.name and pack.version and pack.description
        assert pack.guardrail_name and pack.firewall_name
        assert any(c.controls for c in pack.clauses), pack_id
        assert any(c.is_gap for c in pack.clauses), pack_id


@pytest.mark.parametrize("pack_id", sorted(SHIPPED))
def test_every_control_resolves_and_every_rule_is_used(pack_id: str) -> None:
    pack = catalog()[pack_id]
    used: set[Control] = set()
    for clause in pack.clauses:
        assert (clause.organizational is None) == bool(clause.controls), clause.id
        for control in clause.controls:
            assert control.rule_id in pack.rule_ids(control.kind), (clause.id, str(control))
            used.add(control)
    declared = {Control(kind, rule_id) for kind in ("guardrail", "firewall")
                for rule_id in pack.rule_ids(kind)}  # fmt: skip
    assert declared - used == set(), "every rule serves at least one clause"
    assert all(rule_id.startswith(f"{pack_id}.") for c in declared for rule_id in [c.rule_id])


@pytest.mark.parametrize("pack_id", sorted(SHIPPED))
def test_pack_policies_materialise_as_live_objects(pack_id: str) -> None:
    pack = catalog()[pack_id]
    rules = parse_rules(pack.guardrail_rules, KNOWN)
    assert [r.as_dict() for r in rules] == pack.guardrail_rules
    policy = load_policy(pack.firewall_document, id="p", workspace_id="w",
                         name=pack.firewall_name, mode="enforce")  # fmt: skip
    assert {r.id for r in policy.rules} == set(pack.rule_ids("firewall"))


CLAUSE_SHAPES = {
    "soc2": (["CC1.4", "CC9.2", "A1.3", "PI1.5", "C1.2", "P8.1"],
             ["CC10.1", "CC6", "A1.4", "C1.3", "P9.1", "cc6.1", "CC6.1 "]),
    "hipaa": (["164.312(a)(1)", "164.312(b)", "164.308(a)(1)(ii)(D)", "164.514(b)(2)(i)(R)"],
              ["164.312", "164.312(A)(1)", "164.514(b)(2)(i)(S)", "164.999(a)", "312(b)"]),
    "pci-dss": (["3.4.1", "10.2.1.1", "12.10", "8.4"], ["13.1", "0.1", "10", "3.4.1.1.1", "A1.1"]),
    "gdpr": (["5(1)(c)", "30", "32(1)(a)", "28(2)"], ["Art. 5", "5(1)(C)", "100", "5.1"]),
    "iso27001": (["5.1", "5.37", "6.8", "7.14", "8.34"], ["5.38", "6.9", "7.15", "8.35", "A.8.12"]),
    "eu-ai-act": (["4", "12(1)", "113", "50(1)"], ["114", "0", "12(1)(a)", "Art. 12"]),
}  # fmt: skip


@pytest.mark.parametrize("pack_id", sorted(SHIPPED))
def test_clause_pattern_admits_official_ids_only(pack_id: str) -> None:
    good, bad = CLAUSE_SHAPES[pack_id]
    source = (PACK_DIRECTORY / f"{pack_id}.toml").read_text(encoding="utf-8")
    pattern = re.compile(tomllib.loads(source)["clause_pattern"])
    assert [i for i in good if not pattern.fullmatch(i)] == []
    assert [i for i in bad if pattern.fullmatch(i)] == []


def _soc2() -> Pack:
    return catalog()["soc2"]


def test_soc2_guardrail_blocks_secrets_in_prompts_and_masks_responses() -> None:
    rules = _soc2().guardrail_rules
    assert any(r["action"] == "block" and r["on"] == "input" and r.get("categories") == ["secret"]
               for r in rules)  # fmt: skip
    masked_out = {c for r in rules if r["action"] == "mask" and r["on"] in ("output", "both")
                  for c in r.get("categories", [])}  # fmt: skip
    assert {"secret", "pii"} <= masked_out
    live = Guardrail("g", "w", "SOC 2 pack", "enforce", parse_rules(rules, KNOWN))
    verdicts = {(cat, stage): live.rule_for("any", cat, stage)
                for cat in ("secret", "pii") for stage in ("input", "output")}  # fmt: skip
    assert {k: v.action if v else None for k, v in verdicts.items()} == {
        ("secret", "input"): "block", ("secret", "output"): "mask",
        ("pii", "input"): "mask", ("pii", "output"): "mask",
    }  # fmt: skip


def test_soc2_firewall_denies_private_link_local_and_metadata_egress() -> None:
    document = _soc2().firewall_document
    assert {"preset": "no_private_egress", "id": "soc2.no-private-egress"}.items() <= next(
        r for r in document["rules"] if r.get("preset") == "no_private_egress"
    ).items()
    policy = load_policy(document, id="p", workspace_id="w", name="n", mode="enforce")
    for host in ("10.1.2.3", "192.168.0.1", "127.0.0.1", "169.254.169.254", "fe80::1",
                 "metadata.google.internal", "100.100.100.200"):  # fmt: skip
        decision = policy.decide(Subject("egress", tool="fetch", host=normalise_host(host)))
        assert (decision.verdict, decision.rule_id) == ("deny", "soc2.no-private-egress"), host
    public = policy.decide(Subject("egress", tool="fetch", host=normalise_host("example.com")))
    assert public.verdict == "allow"
    call = policy.decide(Subject("response_call", tool="search", arguments={}))
    assert (call.verdict, call.rule_id) == ("allow", "soc2.tool-call-audit")


def test_soc2_clauses() -> None:
    clauses = {c.id: c for c in _soc2().clauses}
    for gap in ("CC1.4", "CC9.2", "CC7.5", "CC9.1", "P6.6", "P8.1"):
        assert clauses[gap].organizational and not clauses[gap].controls, gap
    for mapped in ("CC6.1", "CC7.2", "CC6.3", "CC6.6", "CC6.7", "CC6.8", "CC8.1"):
        assert clauses[mapped].controls and clauses[mapped].organizational is None, mapped
    assert Control("firewall", "soc2.tool-call-audit") in clauses["CC7.2"].controls
    assert {c.kind for c in clauses["CC6.1"].controls} == {"guardrail", "firewall"}


def test_hipaa_covers_technical_safeguards_and_every_safe_harbor_identifier() -> None:
    clauses = {c.id: c for c in catalog()["hipaa"].clauses}
    for mapped in ("164.312(a)(1)", "164.312(b)", "164.312(c)(1)", "164.312(d)",
                   "164.312(e)(1)"):  # fmt: skip
        assert clauses[mapped].controls, mapped
    harbor = {f"164.514(b)(2)(i)({letter})" for letter in "ABCDEFGHIJKLMNOPQR"}
    assert harbor <= set(clauses)
    assert {i for i in harbor if clauses[i].is_gap} == {
        f"164.514(b)(2)(i)({letter})" for letter in "ABHIKLNPQR"
    }
    assert all(c.is_gap for i, c in clauses.items() if i.startswith(("164.308", "164.310")))


# -- errors ------------------------------------------------------------------------------------

MINIMAL = """\
id = "demo"
name = "Demo"
version = "1"
clause_pattern = '^D[0-9]+$'
description = "A pack for tests."

[guardrail]
name = "Demo pack"
rules = [{ id = "demo.block-secrets", categories = ["secret"], action = "block", on = "input" }]

[firewall]
name = "Demo pack"
document = { schema = 1, rules = [{ preset = "no_private_egress", id = "demo.no-egress" }] }

[[clauses]]
id = "D1"
title = "Secrets stay out"
controls = ["guardrail:demo.block-secrets", "firewall:demo.no-egress"]

[[clauses]]
id = "D2"
title = "Training"
organizational = "People are trained by people."
"""


def _write(tmp_path: Path, text: str, name: str = "demo") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_pack_loads_normalised(tmp_path: Path) -> None:
    pack = load_pack(_write(tmp_path, MINIMAL), KNOWN)
    assert pack.guardrail_rules == [
        {"id": "demo.block-secrets", "action": "block", "on": "input", "categories": ["secret"]}
    ]
    assert pack.firewall_document["default"] == "allow"
    assert pack.firewall_document["combining"] == "first-match"
    assert [c.id for c in pack.clauses] == ["D1", "D2"]
    assert pack.clauses[0].controls == (Control("guardrail", "demo.block-secrets"),
                                        Control("firewall", "demo.no-egress"))  # fmt: skip
    assert pack.clauses[1].organizational == "People are trained by people."
    assert load_catalog(tmp_path) == {"demo": pack}


BROKEN = [
    ("unknown-top-field", 'name = "Demo"', 'name = "Demo"\ncolour = "red"',
     "demo.toml: colour: unknown field"),
    ("missing-field", 'version = "1"\n', "", "demo.toml: version: missing field"),
    ("empty-field", 'name = "Demo"', 'name = ""', "demo.toml: name: must be a non-empty string"),
    ("id-not-file-name", 'id = "demo"', 'id = "other"',
     "demo.toml: id: 'other' must equal the file name 'demo'"),
    ("bad-clause-pattern", "'^D[0-9]+$'", "'^D[0-9+$'",
     "demo.toml: clause_pattern: invalid regular expression"),
    ("unknown-clause", 'id = "D1"', 'id = "X1"',
     "demo.toml: clauses[0].id: unknown clause 'X1' (does not match clause_pattern)"),
    ("duplicate-clause", 'id = "D2"', 'id = "D1"',
     "demo.toml: clauses[1].id: duplicate clause id 'D1'"),
    ("unknown-guardrail-rule", '"guardrail:demo.block-secrets"', '"guardrail:demo.nope"',
     "demo.toml: clauses[0].controls[0]: no guardrail rule 'demo.nope'"),
    ("unknown-firewall-rule", '"firewall:demo.no-egress"', '"firewall:demo.nope"',
     "demo.toml: clauses[0].controls[1]: no firewall rule 'demo.nope'"),
    ("kind-crossed", '"firewall:demo.no-egress"', '"firewall:demo.block-secrets"',
     "demo.toml: clauses[0].controls[1]: no firewall rule 'demo.block-secrets'"),
    ("bad-kind", '"guardrail:demo.block-secrets"', '"audit:demo.block-secrets"',
     "demo.toml: clauses[0].controls[0]: kind 'audit' is not guardrail or firewall"),
    ("control-without-kind", '"guardrail:demo.block-secrets"', '"demo.block-secrets"',
     "demo.toml: clauses[0].controls[0]: must be a string 'guardrail:RULE_ID'"),
    ("duplicate-control", '"firewall:demo.no-egress"]', '"guardrail:demo.block-secrets"]',
     "demo.toml: clauses[0].controls[1]: duplicate control 'guardrail:demo.block-secrets'"),
    ("empty-controls", 'controls = ["guardrail:demo.block-secrets", "firewall:demo.no-egress"]',
     "controls = []", "demo.toml: clauses[0].controls: must be a non-empty array"),
    ("unknown-detector", 'categories = ["secret"]', 'detectors = ["no_such_detector"]',
     "demo.toml: guardrail.rules[0].detectors: unknown name 'no_such_detector'"),
    ("bad-guardrail-action", 'action = "block"', 'action = "drop"',
     "demo.toml: guardrail.rules[0].action: must be one of flag, mask, block"),
    ("invalid-firewall-document", "schema = 1", "schema = 2",
     "demo.toml: firewall.document.schema: 2 is not supported (only 1)"),
    ("firewall-document-not-a-table", 'document = {', 'document = "deny"\n# {',
     "demo.toml: firewall.document: must be a table"),
    ("unknown-document-field", "schema = 1", 'schema = 1, mode = "enforce"',
     "demo.toml: firewall.document.mode: unknown field"),
    ("unknown-preset", 'preset = "no_private_egress"', 'preset = "no_such_preset"',
     "demo.toml: firewall.document.rules[0].preset: unknown preset 'no_such_preset'"),
    ("preset-without-id", ', id = "demo.no-egress"', "",
     "demo.toml: firewall.document.rules[0].id: a preset reference in a pack needs an "
     "explicit id"),
    ("section-missing-name", 'name = "Demo pack"\nrules', "rules",
     "demo.toml: guardrail.name: missing field"),
    ("section-unknown-field", "[firewall]\n", '[firewall]\nmode = "enforce"\n',
     "demo.toml: firewall.mode: unknown field"),
    ("clause-unknown-field", 'title = "Training"', 'title = "Training"\nstate = "gap"',
     "demo.toml: clauses[1].state: unknown field"),
    ("clause-missing-title", 'title = "Training"\n', "",
     "demo.toml: clauses[1].title: missing field"),
    ("both-controls-and-organizational", 'organizational = "People are trained by people."',
     'organizational = "x"\ncontrols = ["guardrail:demo.block-secrets"]',
     "demo.toml: clauses[1]: needs exactly one of controls or organizational"),
    ("neither-controls-nor-organizational", 'organizational = "People are trained by people."\n',
     "", "demo.toml: clauses[1]: needs exactly one of controls or organizational"),
    ("empty-organizational", '"People are trained by people."', '" "',
     "demo.toml: clauses[1].organizational: must be a non-empty string"),
    ("invalid-toml", 'name = "Demo"', "name = ", "demo.toml: invalid TOML"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "message"), [pytest.param(*case[1:], id=case[0])
                                                        for case in BROKEN])  # fmt: skip
def test_broken_pack_is_refused_with_file_and_field(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    assert old in MINIMAL
    path = _write(tmp_path, MINIMAL.replace(old, new, 1))
    with pytest.raises(PackError, match="^" + re.escape(message)):
        load_pack(path, KNOWN)
    with pytest.raises(PackError, match="^" + re.escape(message)):
        load_catalog(tmp_path, KNOWN)


def test_rule_ids_must_be_unique_across_packs(tmp_path: Path) -> None:
    _write(tmp_path, MINIMAL)
    _write(tmp_path, MINIMAL.replace('id = "demo"', 'id = "other"'), name="other")
    with pytest.raises(
        PackError,
        match=re.escape(
            "other.toml: guardrail rule id 'demo.block-secrets' is already used by demo.toml"
        ),
    ):
        load_catalog(tmp_path, KNOWN)
    renamed = MINIMAL.replace('id = "demo"', 'id = "other"').replace(
        "demo.block-secrets", "other.block-secrets"
    )
    _write(tmp_path, renamed, name="other")
    with pytest.raises(
        PackError,
        match=re.escape(
            "other.toml: firewall rule id 'demo.no-egress' is already used by demo.toml"
        ),
    ):
        load_catalog(tmp_path, KNOWN)
    _write(tmp_path, renamed.replace("demo.no-egress", "other.no-egress"), name="other")
    assert set(load_catalog(tmp_path, KNOWN)) == {"demo", "other"}


def test_default_detectors_are_used_when_none_are_given(tmp_path: Path) -> None:
    _write(tmp_path, MINIMAL.replace('categories = ["secret"]', 'detectors = ["us_ssn"]'))
    assert load_catalog(tmp_path)["demo"].guardrail_rules[0]["detectors"] == ["us_ssn"]
    with pytest.raises(PackError, match="unknown name 'us_ssn'"):
        load_catalog(tmp_path, ["email_address"])
