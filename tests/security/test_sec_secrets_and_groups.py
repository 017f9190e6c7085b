"""Secrets stay where they belong, and security groups open only what the spec asks for.

Real: the CLI (in-process and as a subprocess interrupted with SIGINT), with --debug and
-vv logging; the embedded simulator and its JSONL request log; the files stackfleet
writes under $STACKFLEET_HOME; the cassettes under tests/cassettes; the security-group
rules as the cloud holds them after `up` (read back through the simulator's API).
Simulated: the cloud.
"""

from __future__ import annotations

import re
import signal
import stat
import sys
from pathlib import Path

import pytest
from sf_testkit import REPO, Workspace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))
from sf_cloud import inventory, kill_after, spawn

from stackfleet.simulator import Simulator, SimulatorConfig

SMALL = {"etcd": {"count": 1}, "control": {"count": 1}, "workers": {"count": 1}}
PRIVATE = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
PRIVATE_HOMES = ("pki", "ssh")  # where private keys legitimately live, 0600


def _account_secrets(home: Path) -> tuple[str, str]:
    with Simulator.start(SimulatorConfig(state_path=home / "simulator" / "state.sqlite")) as sim:
        return sim.api_key, sim.secret


def _private_key_bodies(home: Path) -> list[str]:
    """The base64 lines of every private key stackfleet holds (long enough to be unique)."""
    bodies = []
    for path in home.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            if PRIVATE.search(text):
                bodies += [
                    line
                    for line in text.splitlines()
                    if len(line) >= 40 and not line.startswith("-----")
                ]
    return bodies


def test_no_secret_in_outputs_logs_cassettes_or_readable_files(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACKFLEET_SIMULATOR_LATENCY", "default=0.02,deployVirtualMachine=0.3")
    spec = ws.spec("sec", roles=SMALL)
    outputs = []
    # Subprocesses: logging goes to the real stderr, as in a CI log.
    for args in (
        ("up", "-f", str(spec), "--debug", "-vv"),
        ("status", "-f", str(spec), "-o", "json", "--debug"),
        ("plan", "-f", str(spec), "-vv"),
        ("up", "-f", str(spec), "-o", "json", "-vv"),
        ("list", "--profile", "simulator", "--debug"),
    ):
        code, out, err = kill_after(spawn(*args), 120, signal.SIGKILL)
        assert code == 0, err
        outputs += [out, err]
    # An interrupted run with --debug (its traceback is allowed; a secret in it is not).
    grown = ws.spec("sec", roles={**SMALL, "workers": {"count": 3}})
    _, out, err = kill_after(spawn("up", "-f", str(grown), "--debug", "-vv"), 1.0, signal.SIGINT)
    outputs += [out, err]
    code, out, err = kill_after(
        spawn("down", "-f", str(spec), "--yes", "--debug", "-vv", "--keep-local"), 120, 9
    )
    assert code == 0, err
    outputs += [out, err]
    assert any("deployVirtualMachine" in o for o in outputs), "debug logs should show calls"

    api_key, secret = _account_secrets(ws.home)
    keys = _private_key_bodies(ws.home)
    assert keys, "the cluster's PKI and SSH keys should exist (kept with --keep-local)"
    needles = {
        "API secret": secret,
        "API key": api_key,
        **{f"key line {i}": k for i, k in enumerate(keys)},
    }

    places: dict[str, str] = {f"output {i}": text for i, text in enumerate(outputs)}
    places["request log"] = (ws.home / "simulator" / "requests.jsonl").read_text()
    for cassette in (REPO / "tests" / "cassettes").glob("**/*"):
        if cassette.is_file():
            places[str(cassette)] = cassette.read_text(errors="replace")
    for path in ws.home.rglob("*"):
        if not path.is_file() or path.suffix == ".sqlite":
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        in_key_home = any(part in PRIVATE_HOMES for part in path.relative_to(ws.home).parts)
        if mode & 0o044 or not in_key_home:
            places[str(path)] = path.read_text(errors="replace")
    hits = [
        f"{what} in {where}"
        for where, text in places.items()
        for what, needle in needles.items()
        if needle and needle in text
    ]
    hits += [
        f"a private key block in {where}" for where, text in places.items() if PRIVATE.search(text)
    ]
    assert hits == []
    for text in outputs:
        assert not re.search(r"(?i)(signature|apikey)=(?!<redacted>)", text)
        assert "'signature'" not in text and "'apikey'" not in text


def test_files_holding_secrets_are_0600(ws: Workspace) -> None:
    spec = ws.spec("perm", roles=SMALL)
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    # Other local users cannot even list which clusters this operator runs.
    for private in (ws.home, ws.home / "clusters", ws.home / "clusters" / "perm"):
        assert stat.S_IMODE(private.stat().st_mode) == 0o700, private
    loose = []
    for path in ws.home.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            holds_keys = any(
                PRIVATE.search(f.read_text(errors="replace")) for f in path.iterdir() if f.is_file()
            )
            if holds_keys and mode & 0o077:
                loose.append(f"{path} {oct(mode)}")
            continue
        text = path.read_bytes()
        secretish = PRIVATE.search(text.decode(errors="replace")) or path.suffix in (
            ".sqlite",
            ".jsonl",
        )
        if secretish and mode & 0o077:
            loose.append(f"{path} {oct(mode)}")
    assert loose == []


def _rules(home: Path) -> list[tuple[str, str, int, int, str | None, str | None]]:
    return [
        (
            g["name"],
            r["protocol"],
            int(r["startport"]),
            int(r["endport"]),
            r.get("cidr"),
            r.get("securitygroupname"),
        )
        for g in inventory(home)["groups"]
        for r in g.get("ingressrule", []) or []
    ]


@pytest.mark.parametrize(
    "access",
    [
        {"ssh_cidrs": ["203.0.113.0/24"], "api_cidrs": ["198.51.100.7/32"]},
        {"ssh_cidrs": ["0.0.0.0/0"], "api_cidrs": ["0.0.0.0/0"], "nodeport_cidrs": ["0.0.0.0/0"]},
        {},
    ],
    ids=["narrow", "world-by-request", "no-access-lists"],
)
def test_security_groups_open_only_what_the_spec_asks(ws: Workspace, access: dict) -> None:
    spec = ws.spec("sg", roles=SMALL, access=access)
    # ws.spec merges dicts: write the access block exactly as given.
    import yaml

    data = yaml.safe_load(spec.read_text())
    data["access"] = access
    spec.write_text(yaml.safe_dump(data))
    up = ws.run("up", "-f", str(spec))
    assert up.exit_code == 0, up.stderr
    allowed = (
        {(22, 22, c) for c in access.get("ssh_cidrs", [])}
        | {(6443, 6443, c) for c in access.get("api_cidrs", [])}
        | {(30000, 32767, c) for c in access.get("nodeport_cidrs", [])}
    )
    rules = _rules(ws.home)
    assert rules, "up should have authorized rules"
    for group, proto, start, end, cidr, source in rules:
        if cidr:
            assert (start, end, cidr) in allowed, (group, proto, start, end, cidr)
            if (start, end) == (22, 22):
                assert group.startswith("sg-")
            if (start, end) == (6443, 6443):
                assert group == "sg-control", group
            if (start, end) == (30000, 32767):
                assert group == "sg-worker", group
        else:
            assert source and source.startswith("sg-"), (group, source)
    world = [r for r in rules if r[4] == "0.0.0.0/0"]
    if not any("0.0.0.0/0" in v for v in access.values()):
        assert world == []
    assert len(rules) == len(set(rules)), "a rule is duplicated"
