"""Look at the simulator's cloud from outside the CLI: what is really there after a run.

Starts a second Simulator on the same SQLite state file the CLI used (the CLI's own
simulator has stopped by then) and lists everything through signed API calls.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sf_testkit import mutating as testkit_mutating

from stackfleet.provisioners.cloudstack.connection import CloudStackAPI
from stackfleet.provisioners.cloudstack.credentials import Credentials
from stackfleet.simulator import Simulator, SimulatorConfig


def inventory(home: Path) -> dict[str, list[dict[str, Any]]]:
    """Every VM, security group, key pair, affinity group and tag in the account."""
    state = home / "simulator" / "state.sqlite"
    if not state.exists():
        return {"vms": [], "groups": [], "keys": [], "affinity": [], "tags": []}
    with Simulator.start(SimulatorConfig(state_path=state)) as sim:
        api = CloudStackAPI(Credentials(sim.endpoint, sim.api_key, sim.secret, "test"))
        return {
            "vms": api.list_all("listVirtualMachines", "virtualmachine"),
            "groups": [
                g
                for g in api.list_all("listSecurityGroups", "securitygroup")
                if g["name"] != "default"
            ],
            "keys": api.list_all("listSSHKeyPairs", "sshkeypair"),
            "affinity": api.list_all("listAffinityGroups", "affinitygroup"),
            "tags": api.list_all("listTags", "tag"),
        }


def leftovers(home: Path, cluster: str) -> list[str]:
    """Anything tagged with the cluster or named for it."""
    inv = inventory(home)
    left = []
    for kind in ("vms", "groups", "keys", "affinity"):
        for item in inv[kind]:
            tags = {t["key"]: t["value"] for t in item.get("tags", []) or []}
            if cluster in item.get("name", "") or tags.get("stackfleet:cluster") == cluster:
                left.append(f"{kind}:{item['name']}")
    left += [f"tag:{t['resourcetype']}:{t['key']}" for t in inv["tags"] if t["value"] == cluster]
    return left


def duplicates(home: Path) -> list[str]:
    """Same-named VMs, groups, keys; same IPs; rules repeated in a group."""
    inv = inventory(home)
    dup = []
    for kind in ("vms", "groups", "keys", "affinity"):
        counts = Counter(item["name"] for item in inv[kind])
        dup += [f"{kind}:{n}" for n, c in counts.items() if c > 1]
    ips = Counter(nic.get("ipaddress") for vm in inv["vms"] for nic in vm.get("nic", []) or [])
    dup += [f"ip:{ip}" for ip, c in ips.items() if ip and c > 1]
    for g in inv["groups"]:
        rules = Counter(
            (
                r.get("protocol"),
                r.get("startport"),
                r.get("endport"),
                r.get("cidr"),
                r.get("securitygroupname"),
            )
            for r in g.get("ingressrule", []) or []
        )
        dup += [f"rule:{g['name']}:{k}" for k, c in rules.items() if c > 1]
    return dup


def mutating(requests: list[dict[str, Any]]) -> list[str]:
    return testkit_mutating(requests, succeeded_only=True)


def log_grew(home: Path) -> Callable[[], bool]:
    """True once the simulator's request log has grown: the run has sent its first call."""
    log = home / "simulator" / "requests.jsonl"
    before = log.stat().st_size if log.exists() else 0
    return lambda: log.exists() and log.stat().st_size > before


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "stackfleet", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a signal for the child only, as a CI runner sends it
    )


def kill_after(
    proc: subprocess.Popen[str], delay: float, sig: int, begun: Callable[[], bool] | None = None
) -> tuple[int, str, str]:
    """Send `sig` after `delay` seconds (unless it ended first); (exit code, out, err).

    With `begun`, the delay counts from when it first returns true (e.g. the run's first
    API call), so a slow start on a loaded machine does not move the signal into the
    interpreter's start-up, before the program has begun."""
    if begun is not None:
        for _ in range(6000):
            if begun() or proc.poll() is not None:
                break
            time.sleep(0.01)
    try:
        out, err = proc.communicate(timeout=delay)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        pass
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()  # hung after the signal: fail, but leave no process behind
        proc.communicate()
        raise
    code = proc.returncode
    return (128 + sig if code == -sig else code), out, err


__all__ = [
    "duplicates",
    "inventory",
    "kill_after",
    "leftovers",
    "log_grew",
    "mutating",
    "signal",
    "spawn",
]
