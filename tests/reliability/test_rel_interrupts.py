"""Interruptions: SIGINT and SIGKILL at seeded random points during `up` and `down`.

Real: the stackfleet CLI as a separate process (`python -m stackfleet`), real signals,
the embedded simulator it starts (HTTP on loopback, signed requests, SQLite state shared
by the killed run, the re-run and the check), the lock tag, the re-run's adoption of
what the killed run left. Simulated: the cloud (VMs are rows that change state on a
clock; job latency is shortened so a kill lands mid-way in a few seconds).

Each trial: a seeded delay and signal; kill `up` (or let `up` finish and kill `down`);
re-run to completion; the cluster must match the spec exactly (all Running, expected
names, no duplicate names, IPs or rules); `down`; nothing tagged or named for the
cluster may remain in the account.
"""

from __future__ import annotations

import random
import signal

import pytest
from sf_cloud import duplicates, kill_after, leftovers, spawn
from sf_testkit import Workspace

TRIALS = 20
LATENCY = "default=0.03,deployVirtualMachine=0.4,startVirtualMachine=0.2"
SMALL = {"etcd": {"count": 1}, "control": {"count": 1}, "workers": {"count": 1}}
EXPECTED = ["{c}-etcd-1", "{c}-control-1", "{c}-worker-1"]

# Filled by the trials, printed by the last one (pytest -s shows it; CI logs keep it).
FIGURES = {"trials": 0, "sigint": 0, "sigkill": 0, "landed": 0, "leaked": 0, "duplicates": 0}


def _one_line_error(err: str) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err


@pytest.mark.parametrize("seed", range(TRIALS))
def test_interrupted_run_converges_and_down_leaves_nothing(
    ws: Workspace, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACKFLEET_SIMULATOR_LATENCY", LATENCY)
    rng = random.Random(seed)
    sig = signal.SIGINT if rng.random() < 0.5 else signal.SIGKILL
    target = "up" if seed % 4 != 3 else "down"  # every fourth trial interrupts `down`
    delay = rng.uniform(0.3, 2.6 if target == "up" else 1.4)
    name = f"k{seed}"
    spec = ws.spec(name, roles=SMALL)

    if target == "down":
        first = ws.run("up", "-f", str(spec))
        assert first.exit_code == 0, first.stderr
    args = ("up", "-f", str(spec)) if target == "up" else ("down", "-f", str(spec), "--yes")
    code, _, err = kill_after(spawn(*args), delay, sig)
    FIGURES["trials"] += 1
    FIGURES["sigint" if sig == signal.SIGINT else "sigkill"] += 1
    if code != 0:
        FIGURES["landed"] += 1
        if sig == signal.SIGINT:
            # One line, the documented code, no traceback.
            assert code == 130, (code, err)
            _one_line_error(err)
            assert "interrupted" in err
        else:
            assert code == 128 + signal.SIGKILL

    again = ws.run("up", "-f", str(spec), "-o", "json")
    assert again.exit_code == 0, again.stderr
    nodes = again.json()["status"]["nodes"]
    assert [n["name"] for n in nodes] == [e.format(c=name) for e in EXPECTED]
    assert all(n["state"] == "Running" and n["bootstrapped"] and n["ip"] for n in nodes), [
        (n["name"], n["state"], n["bootstrapped"], n["ip"]) for n in nodes
    ]
    dup = duplicates(ws.home)
    FIGURES["duplicates"] += len(dup)
    assert dup == []

    down = ws.run("down", "-f", str(spec), "--yes")
    assert down.exit_code == 0, down.stderr
    left = leftovers(ws.home, name)
    FIGURES["leaked"] += len(left)
    assert left == []
    if FIGURES["trials"] == TRIALS:
        print(f"\ninterruption figures: {FIGURES}")
