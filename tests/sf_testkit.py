"""Helpers shared by the CLI and engine tests (imported by name: a conftest cannot be).

What is real here: the stackfleet CLI (in-process through click's runner, or as a
subprocess where signals matter), the embedded CloudStack simulator it starts (real
HTTP on loopback, real request signing, SQLite state), libcloud's HTTP layer. What is
simulated: the cloud itself (no hypervisor; VMs are rows that change state on a clock).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from stackfleet.cli.main import cli

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Workspace:
    home: Path
    root: Path

    def spec(self, name: str = "t1", **overrides: Any) -> Path:
        """Write a spec on the embedded simulator (advanced zone unless overridden)."""
        data: dict[str, Any] = {
            "name": name,
            "cloud": {"profile": "simulator", "zone": "sim-zrh-1"},
            "os": "flatcar",
            "roles": {"etcd": {"count": 3}, "control": {"count": 1}, "workers": {"count": 2}},
            "access": {"ssh_cidrs": ["203.0.113.0/24"], "api_cidrs": ["203.0.113.0/24"]},
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def run(self, *args: str) -> Result:
        runner = CliRunner()
        out = runner.invoke(cli, list(args), catch_exceptions=False)
        return Result(out.exit_code, out.stdout, out.stderr)

    def requests(self) -> list[dict[str, Any]]:
        """The simulator's JSONL request log: every API call the CLI made."""
        log = self.home / "simulator" / "requests.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]

    def subprocess(self, *args: str, **kw: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "stackfleet", *args],
            env=os.environ.copy(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **kw,
        )


def make_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A private $STACKFLEET_HOME (so a private simulator cloud) and a folder for specs."""
    home = tmp_path / "home"
    monkeypatch.setenv("STACKFLEET_HOME", str(home))
    monkeypatch.setenv("STACKFLEET_SIMULATOR_LATENCY", "default=0")
    for name in ("CLOUDSTACK_ENDPOINT", "CLOUDSTACK_KEY", "CLOUDSTACK_SECRET", "CLOUDSTACK_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSTACK_CONFIG", str(tmp_path / "no-such-cloudstack.ini"))
    root = tmp_path / "specs"
    root.mkdir()
    return Workspace(home, root)


# Command-name prefixes of every API call that changes something in the cloud.
MUTATING = (
    "deploy", "create", "delete", "destroy", "update", "authorize", "revoke", "start",
    "stop", "register", "reboot", "expunge",
)  # fmt: skip


def mutating(requests: list[dict[str, Any]], succeeded_only: bool = False) -> list[str]:
    """The mutating commands in a simulator request log (all sent, or only those that
    the cloud accepted)."""
    return [
        r["command"]
        for r in requests
        if (r.get("command") or "").startswith(MUTATING)
        and (not succeeded_only or r.get("status") == 200)
    ]
