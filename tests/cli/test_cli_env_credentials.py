"""`list`, `status --cluster` and `down --expired` from environment credentials alone.

No spec file anywhere in the working directory and no --profile: the CLOUDSTACK_*
variables point at `stackfleet simulator serve`, a separate process on loopback. Real:
the served simulator (HTTP, request signing, SQLite state), the CLI in-process,
credentials found as `cs` finds them. Controlled: the janitor's clock
(`stackfleet.provisioners.down.time`), moved forward instead of waiting. Simulated: the VMs.
"""

from __future__ import annotations

import time as real_time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from sf_serve import serve
from sf_testkit import Workspace

SMALL = {"etcd": {"count": 1}, "control": {"count": 1}, "workers": {"count": 0}}


@pytest.fixture
def served(ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The served cloud's credentials in the environment; cwd an empty folder (no spec)."""
    with serve(tmp_path / "cloud.sqlite") as env:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        empty = tmp_path / "no-spec-here"
        empty.mkdir()
        monkeypatch.chdir(empty)
        yield empty


def _spec(ws: Workspace, name: str, ttl: str) -> Path:
    """A spec with no cloud.profile: `up` too finds the cloud in the environment."""
    path = ws.root / f"{name}.yaml"
    path.write_text(
        f"name: {name}\ncloud: {{zone: sim-zrh-1}}\nttl: {ttl}\n"
        "roles: {etcd: {count: 1}, control: {count: 1}, workers: {count: 0}}\n"
    )
    return path


def _clock(monkeypatch: pytest.MonkeyPatch, ahead_s: float) -> None:
    import stackfleet.provisioners.down as down_mod

    fake = types.SimpleNamespace(
        time=lambda: real_time.time() + ahead_s, strptime=real_time.strptime
    )
    monkeypatch.setattr(down_mod, "time", fake)


def test_list_status_and_janitor_need_only_the_environment(
    ws: Workspace, served: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, ttl in (("brief", "1m"), ("lasting", "2h")):
        up = ws.run("up", "-f", str(_spec(ws, name, ttl)))
        assert up.exit_code == 0, up.stderr
    assert not list(served.iterdir())  # nothing to read here: no stackfleet.yaml

    listed = ws.run("list", "-o", "json")
    assert listed.exit_code == 0, listed.stderr
    assert [c["name"] for c in listed.json()] == ["brief", "lasting"]
    assert "lasting" in ws.run("list").stdout

    status = ws.run("-o", "json", "status", "--cluster", "brief")
    assert status.exit_code == 0, status.stderr
    assert status.json()["summary"] == {"nodes": 2, "running": 2, "wanted": None}
    assert "no spec to compare with" in ws.run("status", "--cluster", "brief").stdout

    nothing_yet = ws.run("down", "--expired", "--yes", "-o", "json")
    assert nothing_yet.exit_code == 0, nothing_yet.stderr
    assert nothing_yet.json() == []

    _clock(monkeypatch, 120)  # two minutes on: "brief" (ttl 1m) has expired
    janitor = ws.run("--yes", "-o", "json", "down", "--expired")
    assert janitor.exit_code == 0, janitor.stderr
    assert [r["cluster"] for r in janitor.json()] == ["brief"]
    assert [c["name"] for c in ws.run("list", "-o", "json").json()] == ["lasting"]
    gone = ws.run("status", "--cluster", "brief", "-o", "json").json()
    assert gone["exists"] is False and gone["nodes"] == []


def test_without_credentials_the_advice_names_what_these_commands_read(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No CLOUDSTACK_* variables, no cloudstack.ini: each says to set them or pass
    `--profile simulator`, not the spec key `profile: simulator` it does not read."""
    monkeypatch.chdir(tmp_path)
    for args in (
        ("list",),
        ("status", "--cluster", "demo"),
        ("down", "--expired", "--yes"),
        ("down", "--cluster", "demo", "--yes"),
    ):
        result = ws.run(*args)
        assert result.exit_code == 2, args
        assert result.stderr.count("\n") == 1, result.stderr
        line = result.stderr
        assert "CLOUDSTACK_ENDPOINT" in line and "cloudstack.ini" in line, args
        assert "`--profile simulator`" in line, args
        assert "profile: simulator" not in line, args


def test_a_missing_ini_section_names_the_flag(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ini = tmp_path / "cloud.ini"
    ini.write_text("[lab]\nendpoint = http://127.0.0.1:9/client/api\nkey = k\nsecret = s\n")
    ini.chmod(0o600)
    monkeypatch.setenv("CLOUDSTACK_CONFIG", str(ini))
    result = ws.run("status", "--cluster", "demo", "--profile", "prod")
    assert result.exit_code == 2
    assert "no [prod] section (sections: lab; the name came from --profile)" in result.stderr
    assert "cloud.profile" not in result.stderr


def test_status_without_spec_or_cluster_says_how_to_name_one(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = ws.run("status")
    assert result.exit_code == 2
    assert "stackfleet.yaml: no such spec file" in result.stderr
    assert "--cluster NAME" in result.stderr and "CLOUDSTACK_*" in result.stderr


def test_expired_with_a_cluster_name_is_refused(ws: Workspace) -> None:
    result = ws.run("down", "--expired", "--cluster", "demo", "--profile", "simulator")
    assert result.exit_code == 2
    assert "drop --cluster demo" in result.stderr
    assert ws.requests() == []
