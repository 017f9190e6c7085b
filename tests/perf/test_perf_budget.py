"""Deterministic performance budgets (no timing): API calls per node, and a light `--help`.

- `up` of 3+1+5 on the simulator (latency 0) makes at most CALLS_PER_NODE calls per node
  plus CONSTANT, polling included, counted from the simulator's request log. Per node:
  deploy, updateVirtualMachine (final userdata), start, and a share of the list calls.
  The constant covers what does not grow with nodes: lookups, live-state reads (plan,
  lock), 3 groups, 18 rules and their results, the key, the anti-affinity group, the
  tag jobs, and the polling rounds.
- `stackfleet --help` imports none of libcloud, cryptography, paramiko, jinja2, rich.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

from sf_testkit import Workspace

CALLS_PER_NODE = 4
CONSTANT = 80
HEAVY = ("libcloud", "cryptography", "paramiko", "jinja2", "rich")


def test_up_api_calls_per_node(ws: Workspace) -> None:
    spec = ws.spec("perf", roles={"workers": {"count": 5}})
    up = ws.run("up", "-f", str(spec))
    assert up.exit_code == 0, up.stderr
    calls = ws.requests()
    nodes = 3 + 1 + 5
    counts = Counter(c["command"] for c in calls)
    assert len(calls) <= CALLS_PER_NODE * nodes + CONSTANT, counts.most_common()
    commands = [c["command"] for c in calls]
    # Lookups are made once, not once per role.
    assert commands.count("listTemplates") == 1
    assert commands.count("listServiceOfferings") == 1


def test_help_imports_nothing_heavy() -> None:
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['stackfleet', '--help']\n"
        "try:\n"
        "    runpy.run_module('stackfleet', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "Usage" in out.stdout
    assert out.stderr.strip().splitlines()[-1:] in ([], [""]), out.stderr
