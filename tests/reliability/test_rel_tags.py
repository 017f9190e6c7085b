"""Interrupted `up` runs and machine tags: the re-run leaves every VM fully tagged.

Real: the stackfleet CLI as a separate process, real signals (SIGKILL and SIGINT) at
seeded points, the embedded simulator it starts (HTTP on loopback, SQLite state shared
by the killed run, the re-run and the check). Simulated: the cloud (job latency is
stretched so a kill lands between a deploy and its tag call).

Tags are written after a deploy, in a call of their own; a run killed in between used to
leave VMs that the next run adopted by name and never tagged again (`list` counted 1
machine of 9). Each trial asserts the full tag set on every VM after the re-run, that
`list` counts them all, and that `plan` has nothing left to do.
"""

from __future__ import annotations

import random
import signal

import pytest
from sf_cloud import duplicates, inventory, kill_after, leftovers, spawn
from sf_testkit import Workspace

TRIALS = 6
LATENCY = "default=0.03,deployVirtualMachine=0.4,startVirtualMachine=0.2"
QUICKSTART = {"etcd": {"count": 3}, "control": {"count": 1}, "workers": {"count": 5}}
FIGURES = {"trials": 0, "landed": 0, "untagged_before_rerun": 0, "untagged_after": 0}


def _untagged(ws: Workspace, cluster: str) -> list[str]:
    bad = []
    for vm in inventory(ws.home)["vms"]:
        tags = {t["key"]: t["value"] for t in vm.get("tags", []) or []}
        role = vm["name"].rsplit("-", 2)[1]
        want = {"stackfleet:cluster": cluster, "stackfleet:role": role}
        if {k: tags.get(k) for k in want} != want:
            bad.append(vm["name"])
    return bad


@pytest.mark.parametrize("seed", range(TRIALS))
def test_interrupted_up_leaves_every_vm_fully_tagged_after_the_rerun(
    ws: Workspace, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACKFLEET_SIMULATOR_LATENCY", LATENCY)
    rng = random.Random(seed)
    sig = signal.SIGKILL if seed % 3 else signal.SIGINT
    # Spread over the deploy waves: early, middle, late.
    delay = 0.7 + 1.5 * seed / (TRIALS - 1) + rng.uniform(-0.1, 0.1)
    name = f"tag{seed}"
    spec = ws.spec(name, roles=QUICKSTART)
    code, _, _ = kill_after(spawn("up", "-f", str(spec)), delay, sig)
    FIGURES["trials"] += 1
    FIGURES["landed"] += code != 0
    FIGURES["untagged_before_rerun"] += len(_untagged(ws, name))

    again = ws.run("up", "-f", str(spec), "-o", "json")
    assert again.exit_code == 0, again.stderr
    assert len(again.json()["status"]["nodes"]) == 9
    untagged = _untagged(ws, name)
    FIGURES["untagged_after"] += len(untagged)
    assert untagged == []
    for vm in inventory(ws.home)["vms"]:
        assert {t["key"]: t["value"] for t in vm["tags"]}["stackfleet:bootstrap"] == "done"
    listed = ws.run("list", "--profile", "simulator", "-o", "json")
    assert [c["machines"] for c in listed.json() if c["name"] == name] == [9]
    assert ws.run("plan", "-f", str(spec), "-o", "json").json()["actions"] == []
    assert duplicates(ws.home) == []

    assert ws.run("down", "-f", str(spec), "--yes").exit_code == 0
    assert leftovers(ws.home, name) == []
    if FIGURES["trials"] == TRIALS:
        print(f"\ntag figures: {FIGURES}")
