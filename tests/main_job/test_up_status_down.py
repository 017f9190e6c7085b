"""The main job end to end: up, status, a second up, down, down again.

Real: the CLI, the embedded simulator over HTTP with signed requests, SQLite state shared
by separate CLI invocations. Simulated: the VMs (the simulator's bookkeeping).
"""

from __future__ import annotations

from sf_testkit import Workspace, mutating


def test_up_status_down_leaves_nothing(ws: Workspace) -> None:
    spec = ws.spec("demo")
    up = ws.run("up", "-f", str(spec), "-o", "json")
    assert up.exit_code == 0, up.stderr
    assert up.json()["changed"] is True

    status = ws.run("status", "-f", str(spec), "--output", "json")
    assert status.exit_code == 0
    nodes = status.json()["nodes"]
    assert [n["name"] for n in nodes] == [
        "demo-etcd-1",
        "demo-etcd-2",
        "demo-etcd-3",
        "demo-control-1",
        "demo-worker-1",
        "demo-worker-2",
    ]
    assert all(n["state"] == "Running" and n["ip"] and n["bootstrapped"] for n in nodes)
    assert len({n["ip"] for n in nodes}) == len(nodes)

    down = ws.run("down", "-f", str(spec), "--yes", "-o", "json")
    assert down.exit_code == 0, down.stderr
    assert down.json() == [
        {"cluster": "demo", "machines": 6, "groups": 3, "rules": 18, "keys": 1, "spread_groups": 1}
    ]
    after = ws.run("status", "--cluster", "demo", "--profile", "simulator", "-o", "json").json()
    assert after["exists"] is False and after["nodes"] == [] and after["groups"] == []

    again = ws.run("down", "-f", str(spec), "--yes", "-o", "json")
    assert again.exit_code == 0 and again.json() == []


def test_second_up_makes_no_mutating_call(ws: Workspace) -> None:
    spec = ws.spec("idem")
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    before = len(ws.requests())
    second = ws.run("up", "-f", str(spec), "-o", "json")
    assert second.exit_code == 0
    assert second.json()["changed"] is False and second.json()["actions"] == []
    calls = ws.requests()[before:]
    assert calls, "the second up must at least read the cloud"
    assert mutating(calls) == []


def test_plan_lists_what_up_would_do_then_nothing(ws: Workspace) -> None:
    spec = ws.spec("planned", roles={"etcd": {"count": 1}, "control": {"count": 1}})
    plan = ws.run("plan", "-f", str(spec), "-o", "json")
    assert plan.exit_code == 0
    actions = {(a["verb"], a["kind"], a["name"]) for a in plan.json()["actions"]}
    assert ("create", "machine", "planned-etcd-1") in actions
    assert ("create", "group", "planned-control") in actions
    assert ("create", "ssh-key", "planned-key") in actions
    assert plan.json()["strategy"] == "allocate"
    assert mutating(ws.requests()) == []
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    assert ws.run("plan", "-f", str(spec), "-o", "json").json()["actions"] == []


def test_basic_zone_uses_reboot_strategy(ws: Workspace) -> None:
    spec = ws.spec("basic", cloud={"zone": "sim-gva-1"})
    up = ws.run("up", "-f", str(spec), "-o", "json")
    assert up.exit_code == 0, up.stderr
    nodes = up.json()["status"]["nodes"]
    assert all(n["state"] == "Running" and n["ip"] for n in nodes)
    commands = [r["command"] for r in ws.requests()]
    # Booted with stage 1, stopped, given final userdata, started again.
    assert commands.count("stopVirtualMachine") == len(nodes)
    assert commands.count("updateVirtualMachine") == len(nodes)


def test_scale_down_removes_only_extra_workers(ws: Workspace) -> None:
    spec = ws.spec("scale")
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    smaller = ws.spec("scale", roles={"workers": {"count": 1}})
    up = ws.run("up", "-f", str(smaller), "-o", "json", "--yes")
    assert up.exit_code == 0
    assert [a["name"] for a in up.json()["actions"]] == ["scale-worker-2"]
    names = [n["name"] for n in up.json()["status"]["nodes"]]
    assert "scale-worker-2" not in names and "scale-worker-1" in names


def test_list_shows_clusters(ws: Workspace) -> None:
    assert ws.run("up", "-f", str(ws.spec("one", roles={"etcd": {"count": 1}}))).exit_code == 0
    listed = ws.run("list", "--profile", "simulator", "-o", "json")
    assert listed.exit_code == 0
    assert [c["name"] for c in listed.json()] == ["one"]
    assert listed.json()[0]["machines"] == 4  # 1 etcd + 1 control + 2 workers
