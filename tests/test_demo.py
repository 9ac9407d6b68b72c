"""`orca-relay demo` as a user runs it on a fresh checkout: a real process, real HTTP."""

from __future__ import annotations

import subprocess
import sys


def test_the_demo_walks_observe_readiness_golive_enforce() -> None:
    done = subprocess.run([sys.executable, "-m", "relay", "demo"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    observe = lines.index("5. traffic in observe (passes; recorded as would-have-blocked):")
    assert lines[observe + 1].endswith("→ 200 passed")
    assert lines[observe + 2].endswith("→ 200 passed")
    enforced = lines.index("8. the same traffic, enforced:")
    assert lines[enforced + 1].endswith("→ 400 guardrail_blocked")
    assert lines[enforced + 2].endswith("→ 400 firewall_blocked")
    assert any(line.startswith("9. readiness: soc2 live") for line in lines)
    assert "AKIAZ7Q3KXW2M4H5PLTB" not in done.stdout + done.stderr
