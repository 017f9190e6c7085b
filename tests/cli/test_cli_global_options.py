"""Global options (-o, -q, -v, --debug, --yes) work before and after the command.

Real: the CLI (in-process through click's runner, and `python -m stackfleet` as a
subprocess), the embedded simulator it starts (HTTP on loopback, signed requests, SQLite
state under a private $STACKFLEET_HOME). Simulated: the cloud's VMs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sf_testkit import Workspace

SMALL = {"etcd": {"count": 1}, "control": {"count": 1}, "workers": {"count": 1}}
GLOBAL_FLAGS = ("--output", "-o", "--quiet", "-q", "--verbose", "-v", "--debug", "--yes", "-y")


def test_top_level_help_lists_the_global_options(ws: Workspace) -> None:
    result = ws.run("--help")
    assert result.exit_code == 0
    options = result.stdout.split("Options:")[1].split("Commands:")[0]
    for flag in GLOBAL_FLAGS:
        assert flag in options, flag
    assert "before or after the command" in result.stdout


def test_output_before_or_after_the_command_gives_the_same_json(ws: Workspace) -> None:
    spec = str(ws.spec("place", roles=SMALL))
    assert ws.run("up", "-f", spec).exit_code == 0
    before = ws.run("-o", "json", "status", "-f", spec)
    after = ws.run("status", "-f", spec, "-o", "json")
    long_form = ws.run("--output", "json", "status", "-f", spec)
    assert before.exit_code == after.exit_code == long_form.exit_code == 0, before.stderr
    assert before.json() == after.json() == long_form.json()
    assert before.json()["cluster"] == "place"

    listed = ws.run("-o", "json", "list", "--profile", "simulator")
    assert [c["name"] for c in listed.json()] == ["place"]
    planned = ws.run("-o", "json", "plan", "-f", spec)
    assert planned.exit_code == 0 and planned.json()["actions"] == []


def test_the_later_output_option_wins(ws: Workspace) -> None:
    spec = str(ws.spec("later", roles=SMALL))
    result = ws.run("-o", "json", "plan", "-f", spec, "-o", "table")
    assert result.exit_code == 0
    assert "plan for later" in result.stdout
    with pytest.raises(json.JSONDecodeError):
        json.loads(result.stdout)


def test_yes_before_the_command_lets_down_run_without_a_terminal(ws: Workspace) -> None:
    spec = str(ws.spec("byebye", roles=SMALL))
    assert ws.run("up", "-f", spec).exit_code == 0
    refused = ws.run("down", "-f", spec)  # the runner's stdin is no terminal
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    for yes in ("--yes", "-y"):
        gone = ws.run(yes, "-o", "json", "down", "-f", spec)
        assert gone.exit_code == 0, gone.stderr
    assert ws.run("-o", "json", "list", "--profile", "simulator").json() == []


def test_quiet_prints_only_the_result(ws: Workspace) -> None:
    spec = str(ws.spec("hush", roles=SMALL))
    loud = ws.run("plan", "-f", spec)
    assert loud.exit_code == 0
    quiet_up = ws.run("-q", "up", "-f", spec)
    assert quiet_up.exit_code == 0
    assert quiet_up.stderr == ""  # no phases, no progress, no "not waiting" note
    assert "cluster hush: 3/3 running" in quiet_up.stdout  # the result is still there

    again = ws.run("up", "-f", spec)  # without -q: the note is there
    assert "already matches the spec" in again.stderr
    assert ws.run("up", "-f", spec, "--quiet").stderr == ""

    down = ws.run("down", "-f", spec, "-y", "-q", "-o", "json")
    assert down.exit_code == 0 and down.stderr == ""
    assert down.json()[0]["machines"] == 3
    nothing = ws.run("down", "-f", spec, "-y")
    assert "nothing to delete" in nothing.stderr
    assert ws.run("-q", "down", "-f", spec, "-y").stderr == ""


def test_quiet_still_prints_errors(ws: Workspace) -> None:
    result = ws.run("-q", "status", "-f", str(ws.root / "nope.yaml"))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "nope.yaml" in result.stderr


def _stackfleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stackfleet", *args],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_program_accepts_global_options_before_the_command(ws: Workspace) -> None:
    """The console entry point, not only click's runner: `-v list`, `-o json status`,
    `--debug` before the command, and -v given on both sides counting up."""
    spec = str(ws.spec("prog", roles=SMALL))
    assert ws.run("up", "-f", spec).exit_code == 0

    listed = _stackfleet("-v", "list", "--profile", "simulator")
    assert listed.returncode == 0, listed.stderr
    assert "prog" in listed.stdout
    assert "DEBUG stackfleet.cloudstack: listVirtualMachines" in listed.stderr
    assert "signature=" not in listed.stderr.lower()

    status = _stackfleet("-o", "json", "status", "-f", spec)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["summary"] == {"nodes": 3, "running": 3, "wanted": 3}

    failed = _stackfleet("--debug", "status", "-f", str(ws.root / "nope.yaml"))
    assert failed.returncode == 2
    assert "Traceback" in failed.stderr and "error: " in failed.stderr
    plain = _stackfleet("status", "-f", str(ws.root / "nope.yaml"))
    assert plain.returncode == 2 and "Traceback" not in plain.stderr


def test_state_group_takes_global_options_too(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = str(ws.spec("stored", roles=SMALL))
    assert ws.run("up", "-f", spec).exit_code == 0
    store = ws.root.parent / "store"
    monkeypatch.setenv("STACKFLEET_STATE_KEY", "A" * 43 + "=")
    for args in (
        ("-o", "json", "state", "push", "-f", spec),
        ("state", "-o", "json", "push", "-f", spec),
        ("state", "push", "-f", spec, "-o", "json"),
    ):
        result = ws.run(*args, "--to", store.as_uri(), "--dry-run")
        assert result.exit_code == 0, (args, result.stderr)
        moved = result.json()["moved"]
        assert {"file": "pki/etcd-ca.crt", "action": "add"} in moved, args
