"""TTL: `ttl:` in the spec becomes an expiry tag; `down --expired` is the CI janitor.

Real: the CLI in-process, the expiry tag written to and read back from the embedded
simulator's cloud, `down --expired` finding clusters by tag with no spec. Controlled:
the janitor's clock (`stackfleet.provisioners.down.time`), moved forward instead of
waiting; everything else runs on the real clock. Simulated: the cloud.
"""

from __future__ import annotations

import time as real_time
import types

import pytest
from sf_cloud import inventory, leftovers
from sf_testkit import Workspace

SMALL = {"etcd": {"count": 1}, "control": {"count": 1}, "workers": {"count": 0}}


def _clock(monkeypatch: pytest.MonkeyPatch, ahead_s: float) -> None:
    import stackfleet.provisioners.down as down_mod

    fake = types.SimpleNamespace(
        time=lambda: real_time.time() + ahead_s, strptime=real_time.strptime
    )
    monkeypatch.setattr(down_mod, "time", fake)


def test_down_expired_removes_only_expired_clusters(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, ttl in (("short", "1m"), ("long", "2h"), ("forever", None)):
        extra = {"ttl": ttl} if ttl else {}
        assert ws.run("up", "-f", str(ws.spec(name, roles=SMALL, **extra))).exit_code == 0
    listed = {
        c["name"]: c["expires"]
        for c in ws.run("list", "--profile", "simulator", "-o", "json").json()
    }
    assert set(listed) == {"short", "long", "forever"}
    assert listed["forever"] is None and listed["short"] < listed["long"]

    # Nothing has expired yet.
    none = ws.run("down", "--expired", "--profile", "simulator", "--yes", "-o", "json")
    assert none.exit_code == 0 and none.json() == []

    _clock(monkeypatch, 120)  # two minutes later: only the 1m cluster is gone
    janitor = ws.run("down", "--expired", "--profile", "simulator", "--yes", "-o", "json")
    assert janitor.exit_code == 0, janitor.stderr
    assert [r["cluster"] for r in janitor.json()] == ["short"]
    assert leftovers(ws.home, "short") == []
    remaining = [c["name"] for c in ws.run("list", "--profile", "simulator", "-o", "json").json()]
    assert remaining == ["forever", "long"]

    _clock(monkeypatch, 3 * 3600)
    later = ws.run("down", "--expired", "--profile", "simulator", "--yes", "-o", "json")
    assert [r["cluster"] for r in later.json()] == ["long"]
    remaining = [c["name"] for c in ws.run("list", "--profile", "simulator", "-o", "json").json()]
    assert remaining == ["forever"]


def test_rerun_of_up_keeps_the_expiry(ws: Workspace) -> None:
    spec = ws.spec("keep", roles=SMALL, ttl="2h")
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    first = ws.run("status", "-f", str(spec), "-o", "json").json()["expires"]
    assert first
    real_time.sleep(1.1)
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    assert ws.run("status", "-f", str(spec), "-o", "json").json()["expires"] == first


@pytest.mark.parametrize("ttl", ["0m", "-5m", "2 weeks", "1y", "abc"])
def test_bad_ttl_is_refused(ws: Workspace, ttl: str) -> None:
    result = ws.run("up", "-f", str(ws.spec("badttl", roles=SMALL, ttl=ttl)))
    assert result.exit_code == 2, (ttl, result.stderr)
    assert "ttl" in result.stderr and "Traceback" not in result.stderr
    assert ws.requests() == []


def test_growing_renews_the_expiry_on_every_machine(ws: Workspace) -> None:
    """Adding a machine renews a ttl cluster's expiry, on the cluster and on every VM.
    The simulator refuses createTags over a key a VM already has, as CloudStack does
    (resource_tags is unique on resource and key): `up` failed here, after the new VM was
    made. A renewed tag is deleteTags of the old, then createTags of the new."""
    spec = ws.spec("grow", roles=SMALL, ttl="2h")
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    first = ws.run("status", "-f", str(spec), "-o", "json").json()["expires"]
    real_time.sleep(1.1)  # the expiry has one-second resolution
    bigger = ws.spec("grow", roles={**SMALL, "workers": {"count": 1}}, ttl="2h")
    grown = ws.run("up", "-f", str(bigger))
    assert grown.exit_code == 0, grown.stderr
    renewed = ws.run("status", "-f", str(bigger), "-o", "json").json()["expires"]
    assert renewed > first
    vms = inventory(ws.home)["vms"]
    assert len(vms) == 3
    for vm in vms:
        assert {t["key"]: t["value"] for t in vm["tags"]}["stackfleet:expires"] == renewed
    assert ws.run("plan", "-f", str(bigger), "-o", "json").json()["actions"] == []
