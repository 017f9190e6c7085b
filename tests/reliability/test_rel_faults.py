"""Faults: the simulator's seeded injection under `up` and `down`.

Real: the stackfleet CLI in-process, its connection layer, retries and look-ups, the
embedded simulator over HTTP (signed requests, SQLite state) with its fault injector
(HTTP 503, connections reset mid-request, async jobs failing with 530, jobs ten times
slower) and its rate limit (HTTP 429 "retry after N ms"). Simulated: the cloud.

`up` must converge (a run may stop with one line and exit 1 when a job failed; the
next run continues), never create a duplicate, and `down` must complete in one run
under the same faults, leaving nothing tagged or named for the cluster.
"""

from __future__ import annotations

import pytest
from sf_cloud import duplicates, leftovers
from sf_testkit import Workspace

SMALL = {"etcd": {"count": 1}, "control": {"count": 1}, "workers": {"count": 1}}
TRANSPORT = "http5xx=0.06,drop=0.06,slow=0.1,seed={seed}"
EVERYTHING = "http5xx=0.05,drop=0.05,jobfail=0.08,slow=0.1,seed={seed}"
DEPLOY_ONLY = "jobfail=0.35,seed={seed}"
UP_RUNS = 4

FIGURES = {"trials": 0, "faults": 0, "up_reruns": 0, "leaked": 0, "duplicates": 0}

CASES = (
    [("transport", TRANSPORT, "", s) for s in range(4)]
    + [
        ("deploy-jobfail", DEPLOY_ONLY, "deployVirtualMachine,startVirtualMachine", s)
        for s in range(3)
    ]
    + [("everything", EVERYTHING, "", s) for s in range(3)]
)


def _faults_injected(ws: Workspace) -> int:
    n = sum(1 for r in ws.requests() if str(r.get("note", "")).startswith("fault"))
    # A failed job shows in the result the client asked for.
    return n


@pytest.mark.parametrize(("kind", "faults", "commands", "seed"), CASES)
def test_up_and_down_under_faults(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch, kind: str, faults: str, commands: str, seed: int
) -> None:
    monkeypatch.setenv("STACKFLEET_SIMULATOR_LATENCY", "default=0.01")
    monkeypatch.setenv("STACKFLEET_SIMULATOR_FAULT_COMMANDS", commands)
    name = f"f{seed}{kind[0]}"
    spec = ws.spec(name, roles=SMALL)
    for run in range(UP_RUNS):
        # A new seed per run: the same seed replays the same faults on the same calls.
        monkeypatch.setenv("STACKFLEET_SIMULATOR_FAULTS", faults.format(seed=seed + 100 * run))
        up = ws.run("up", "-f", str(spec), "-o", "json")
        if up.exit_code == 0:
            break
        # What it could not do, in one line, as a cloud-side failure; then run again.
        assert up.exit_code == 1, up.stderr
        assert "Traceback" not in up.stderr
        assert up.stderr.strip().splitlines()[-1].startswith("error: ")
        FIGURES["up_reruns"] += 1
        assert duplicates(ws.home) == []
    else:
        pytest.fail(f"up did not converge in {UP_RUNS} runs: {up.stderr}")
    if kind == "transport":
        assert run == 0, "transport faults and slow jobs alone must not stop `up`"
    nodes = up.json()["status"]["nodes"]
    assert [n["name"] for n in nodes] == [f"{name}-etcd-1", f"{name}-control-1", f"{name}-worker-1"]
    assert all(n["state"] == "Running" and n["bootstrapped"] for n in nodes)
    dup = duplicates(ws.home)
    FIGURES["duplicates"] += len(dup)
    assert dup == []

    monkeypatch.setenv("STACKFLEET_SIMULATOR_FAULTS", faults.format(seed=seed + 1000))
    down = ws.run("down", "-f", str(spec), "--yes")
    assert down.exit_code == 0, down.stderr
    left = leftovers(ws.home, name)
    FIGURES["leaked"] += len(left)
    assert left == []
    FIGURES["trials"] += 1
    FIGURES["faults"] += _faults_injected(ws)
    if FIGURES["trials"] == len(CASES):
        print(f"\nfault figures: {FIGURES}")


def test_rate_limited_up_and_down(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """api.throttling at 8 requests/s: every 429 is honoured (retry after N ms)."""
    monkeypatch.setenv("STACKFLEET_SIMULATOR_RATE_LIMIT", "8")
    spec = ws.spec("rl", roles=SMALL)
    up = ws.run("up", "-f", str(spec))
    assert up.exit_code == 0, up.stderr
    throttled = [r for r in ws.requests() if r["status"] == 429]
    assert throttled, "the limit should have been hit"
    assert duplicates(ws.home) == []
    assert ws.run("down", "-f", str(spec), "--yes").exit_code == 0
    assert leftovers(ws.home, "rl") == []
