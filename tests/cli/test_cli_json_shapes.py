"""Every cluster command's `-o json` output has exactly the keys docs/output.md shows.

The example under each command's heading in docs/output.md is parsed and its shape (the
keys of every object, through lists) compared with what the command prints, so the page
cannot drift from the code. Real: the CLI in-process, the embedded simulator (HTTP on
loopback, signed requests, SQLite state), a file:// state store. Simulated: the VMs.
"""

from __future__ import annotations

import pytest
from sf_output_doc import documented, same_shape, shape
from sf_testkit import Workspace

SMALL = {"etcd": {"count": 1}, "control": {"count": 1}, "workers": {"count": 1}}


def test_the_shape_checker_notices_a_missing_key() -> None:
    with pytest.raises(AssertionError, match="keys differ"):
        same_shape({"a": 1, "b": [{"c": 1}]}, {"a": 1, "b": [{"d": 1}]})
    same_shape({"a": None, "b": []}, {"a": "x", "b": [{"d": 1}]})
    assert shape({"a": [{"b": 1}], "c": 2}) == {"a": [{"b": None}], "c": None}


def test_plan_up_status_list_down_match_the_docs(ws: Workspace) -> None:
    spec = ws.spec("shapes", roles=SMALL, ttl="2h")

    plan = ws.run("plan", "-f", str(spec), "-o", "json")
    assert plan.exit_code == 0, plan.stderr
    assert plan.json()["actions"], "a first plan has actions to compare"
    same_shape(documented("`plan`"), plan.json())

    up = ws.run("up", "-f", str(spec), "-o", "json")
    assert up.exit_code == 0, up.stderr
    doc_up = documented("`up`")
    assert sorted(doc_up) == sorted(up.json())
    same_shape(doc_up["actions"], up.json()["actions"])
    same_shape(documented("`status`"), up.json()["status"])

    status = ws.run("status", "-f", str(spec), "-o", "json")
    assert status.exit_code == 0, status.stderr
    same_shape(documented("`status`"), status.json())
    flags = ws.run("status", "--cluster", "shapes", "--profile", "simulator", "-o", "json")
    assert flags.json()["spec"] is None and flags.json()["summary"]["wanted"] is None
    assert sorted(flags.json()) == sorted(documented("`status`"))

    listed = ws.run("list", "--profile", "simulator", "-o", "json")
    assert listed.exit_code == 0
    same_shape(documented("`list`"), listed.json())
    assert listed.json()[0]["expires"]

    down = ws.run("down", "-f", str(spec), "--yes", "-o", "json")
    assert down.exit_code == 0, down.stderr
    same_shape(documented("`down`"), down.json())
    assert down.json()[0]["machines"] == 3


def test_state_push_and_pull_match_the_docs(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ws.spec("pushed", roles=SMALL)
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    monkeypatch.setenv("STACKFLEET_STATE_KEY", "B" * 43 + "=")
    store = (ws.root.parent / "store").as_uri()
    doc = documented("`state push` and `state pull`")
    push = ws.run("state", "push", "-f", str(spec), "--to", store, "-o", "json")
    assert push.exit_code == 0, push.stderr
    same_shape(doc, push.json())
    assert push.json()["moved"] and push.json()["dry_run"] is False
    pull = ws.run(
        "state", "pull", "--cluster", "pushed", "--from", store, "--dry-run", "-o", "json"
    )
    assert pull.exit_code == 0, pull.stderr
    same_shape(doc, pull.json())
    assert pull.json()["dry_run"] is True
