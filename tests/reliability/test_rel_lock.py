"""Two `up` runs of one cluster at once: one builds it, the other refuses; no duplicates.

Real: two stackfleet processes started together, each with its own embedded simulator
on the same SQLite state (one cloud), the lock (a `<cluster>-lock` security group, which
the cloud refuses to create twice), and CloudStack's own refusal of a second VM, group or
key with the same name. Simulated:
the cloud (short job latency so the two runs overlap for seconds).
"""

from __future__ import annotations

import pytest
from sf_cloud import duplicates, leftovers, spawn
from sf_testkit import Workspace

SMALL = {"etcd": {"count": 1}, "control": {"count": 1}, "workers": {"count": 1}}
LATENCY = "default=0.03,deployVirtualMachine=0.5,startVirtualMachine=0.3"


@pytest.mark.parametrize("round_", range(3))
def test_two_concurrent_ups_never_double_create(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch, round_: int
) -> None:
    monkeypatch.setenv("STACKFLEET_SIMULATOR_LATENCY", LATENCY)
    name = f"race{round_}"
    spec = ws.spec(name, roles=SMALL)
    if round_ == 2:
        # The cluster exists already: a pure race on the lock to add a worker.
        assert ws.run("up", "-f", str(spec)).exit_code == 0
        spec = ws.spec(name, roles={**SMALL, "workers": {"count": 2}})
    before = len(ws.requests())
    procs = [spawn("up", "-f", str(spec)) for _ in range(2)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    for _, _, err in results:
        assert "Traceback" not in err, err
    # Exactly one builds; the other refuses on the lock (not on the cloud's name check,
    # which would also stop a duplicate but proves nothing about the lock).
    winners = [r for r in results if r[0] == 0]
    losers = [r for r in results if r[0] != 0]
    assert len(winners) == 1 and len(losers) == 1, results
    code, _, err = losers[0]
    # A clear refusal: one line, a cloud-side (exit 1) failure naming the holder.
    assert code == 1, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert "is locked by another stackfleet run" in errors[0], errors
    assert "wait for it to finish" in errors[0], errors
    # The loser sent nothing that changes the cloud but its attempt at the lock: every
    # VM was deployed once, by the winner.
    deployed = [r for r in ws.requests()[before:] if r["command"] == "deployVirtualMachine"]
    assert len(deployed) == (1 if round_ == 2 else 3), [r["status"] for r in deployed]
    assert duplicates(ws.home) == []
    again = ws.run("up", "-f", str(spec), "-o", "json")
    assert again.exit_code == 0, again.stderr
    nodes = again.json()["status"]["nodes"]
    assert len(nodes) == (4 if round_ == 2 else 3) and all(n["state"] == "Running" for n in nodes)
    assert duplicates(ws.home) == []
    assert ws.run("down", "-f", str(spec), "--yes").exit_code == 0
    assert leftovers(ws.home, name) == []


def test_down_refuses_while_up_holds_the_lock(ws: Workspace) -> None:
    """The lock, taken by hand as a live run elsewhere would: `down` and `up` refuse."""
    import socket
    import time

    from stackfleet.provisioners.session import CloudTarget, open_cloud

    spec = ws.spec("held", roles=SMALL)
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    with open_cloud(CloudTarget("simulator")) as prov:
        holder = f"other-{socket.gethostname()}:1:{int(time.time())}"
        assert prov.take_lock("held", holder) is None
    grown = ws.spec("held", roles={**SMALL, "workers": {"count": 2}})
    before = len(ws.requests())
    up = ws.run("up", "-f", str(grown))
    assert up.exit_code == 1 and "locked by another stackfleet run" in up.stderr, up.stderr
    down = ws.run("down", "-f", str(spec), "--yes")
    assert down.exit_code == 1 and "locked" in down.stderr
    created = [r for r in ws.requests()[before:] if r["command"] == "deployVirtualMachine"]
    assert created == []
