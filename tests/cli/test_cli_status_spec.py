"""`status` counts against the spec and names the machines the cloud lacks.

Real: the CLI in-process, the embedded simulator (HTTP on loopback, signed requests,
SQLite state shared by the invocations). Simulated: the VMs.
"""

from __future__ import annotations

from sf_testkit import Workspace

TWO_WORKERS = {"etcd": {"count": 1}, "control": {"count": 1}, "workers": {"count": 2}}
FOUR_WORKERS = {"etcd": {"count": 1}, "control": {"count": 1}, "workers": {"count": 4}}
ONE_WORKER = {"etcd": {"count": 1}, "control": {"count": 1}, "workers": {"count": 1}}


def test_status_names_the_machines_the_cloud_lacks(ws: Workspace) -> None:
    assert ws.run("up", "-f", str(ws.spec("grow", roles=TWO_WORKERS))).exit_code == 0
    spec = ws.spec("grow", roles=FOUR_WORKERS)  # the spec now wants two more workers

    table = ws.run("status", "-f", str(spec))
    assert table.exit_code == 0, table.stderr
    assert "cluster grow: 4/6 running; missing: worker-3, worker-4" in table.stdout
    rows = {
        line.split()[1]: line.split()[5] for line in table.stdout.splitlines() if "grow-" in line
    }
    assert rows["grow-worker-3"] == rows["grow-worker-4"] == "missing"
    assert rows["grow-worker-2"] == "Running"

    data = ws.run("status", "-f", str(spec), "-o", "json").json()
    assert data["summary"] == {"nodes": 4, "running": 4, "wanted": 6}
    assert data["spec"] == {
        "file": str(spec),
        "missing": ["grow-worker-3", "grow-worker-4"],
        "extra": [],
    }
    assert [n["name"] for n in data["nodes"]][-1] == "grow-worker-2"

    # `up` creates them; then nothing is missing.
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    after = ws.run("status", "-f", str(spec), "-o", "json").json()
    assert after["summary"] == {"nodes": 6, "running": 6, "wanted": 6}
    assert after["spec"]["missing"] == []
    assert "cluster grow: 6/6 running\n" in ws.run("status", "-f", str(spec)).stdout


def test_status_counts_only_wanted_machines_and_names_the_extra(ws: Workspace) -> None:
    assert ws.run("up", "-f", str(ws.spec("shrink", roles=TWO_WORKERS))).exit_code == 0
    spec = ws.spec("shrink", roles=ONE_WORKER)
    data = ws.run("status", "-f", str(spec), "-o", "json").json()
    assert data["summary"] == {"nodes": 4, "running": 3, "wanted": 3}
    assert data["spec"]["extra"] == ["shrink-worker-2"] and data["spec"]["missing"] == []
    table = ws.run("status", "-f", str(spec)).stdout
    assert "cluster shrink: 3/3 running; not in the spec: worker-2" in table


def test_status_by_name_says_it_has_no_spec_to_compare_with(ws: Workspace) -> None:
    assert ws.run("up", "-f", str(ws.spec("named", roles=TWO_WORKERS))).exit_code == 0
    table = ws.run("status", "--cluster", "named", "--profile", "simulator")
    assert table.exit_code == 0, table.stderr
    assert "cluster named: 4/4 running (no spec to compare with" in table.stdout
    data = ws.run("status", "--cluster", "named", "--profile", "simulator", "-o", "json").json()
    assert data["spec"] is None
    assert data["summary"] == {"nodes": 4, "running": 4, "wanted": None}

    absent = ws.run("status", "--cluster", "nobody", "--profile", "simulator")
    assert absent.exit_code == 0
    assert "cluster nobody: nothing in the cloud is tagged with it" in absent.stdout


def test_status_refuses_ambiguous_or_malformed_targets(ws: Workspace) -> None:
    spec = str(ws.spec("both", roles=ONE_WORKER))
    both = ws.run("status", "-f", spec, "--cluster", "both", "--profile", "simulator")
    assert both.exit_code == 2
    assert "give one of them" in both.stderr

    bad = ws.run("status", "--cluster", "Prod_EU", "--profile", "simulator")
    assert bad.exit_code == 2 and bad.stderr.count("\n") == 1
    assert "e.g. demo or ci-1234" in bad.stderr and "^" not in bad.stderr
    assert ws.requests() == []  # refused before any API call
