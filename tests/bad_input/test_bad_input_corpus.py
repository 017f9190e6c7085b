"""The bad-input corpus: every case fails with one line, the right exit code, no traceback,
and nothing created in the cloud.

Real: the stackfleet CLI in-process (click's runner, the real error edge), spec loading
and validation, credential discovery, the embedded simulator over HTTP with signed
requests (zone/template/offering look-ups, VM limits, a wrong secret, a skewed clock
against signature v3 `expires`), a connection to a closed port. Controlled: the
client's clock in the skew case (the signing module's `time`). Simulated: the cloud.

Spec cases are files under specs/, each with a header:
    # expect: <exit code>
    # message: <fragment of the one-line error>
    # env: NAME=value ...        (optional)
The rest (credentials, endpoints, flags) are the table CASES below.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sf_testkit import Result, Workspace, mutating

from stackfleet.simulator import Simulator, SimulatorConfig

SPECS = Path(__file__).parent / "specs"


def _header(path: Path) -> tuple[int, str, dict[str, str]]:
    code, message, env = None, None, {}
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith("#"):
            break
        key, _, value = line[1:].strip().partition(":")
        if key == "expect":
            code = int(value)
        elif key == "message":
            message = value.strip()
        elif key == "env":
            env.update(item.split("=", 1) for item in value.split())
    assert code is not None and message, f"{path.name}: header needs expect and message"
    return code, message, env


def _check(ws: Workspace, result: Result, code: int, fragment: str) -> None:
    err = result.stderr
    assert "Traceback" not in err and "Traceback" not in result.stdout, err
    # Ours: "error: ..."; click's own usage errors: "Error: ..." after its usage lines.
    errors = [line for line in err.splitlines() if line.startswith(("error:", "Error:"))]
    assert len(errors) == 1, err
    assert fragment in errors[0], (fragment, errors[0])
    assert result.exit_code == code, (result.exit_code, errors[0])
    made = mutating(ws.requests(), succeeded_only=True)
    assert made == [], f"bad input must create nothing: {made}"


SPEC_FILES = sorted(SPECS.glob("*.yaml"))


@pytest.mark.parametrize("path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_bad_spec(ws: Workspace, monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    code, fragment, env = _header(path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    _check(ws, ws.run("up", "-f", str(path)), code, fragment)


# --- credentials, endpoints, clocks, flags -------------------------------------------
GOOD = (
    "name: ok\ncloud: {profile: %s, zone: sim-zrh-1}\n"
    "roles: {etcd: {count: 1}, control: {count: 1}, workers: {count: 1}}\n"
)


def _spec(ws: Workspace, profile: str = "prod") -> Path:
    path = ws.root / "ok.yaml"
    path.write_text(GOOD % profile)
    return path


def _ini(ws: Workspace, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    ini = ws.root / "cloudstack.ini"
    ini.write_text(text)
    monkeypatch.setenv("CLOUDSTACK_CONFIG", str(ini))


def _sim_env(ws: Workspace, monkeypatch: pytest.MonkeyPatch, secret: str | None = None) -> Any:
    """A simulator outside the CLI (its request log in the workspace), reached by env."""
    log = ws.home / "simulator"
    log.mkdir(parents=True, exist_ok=True)
    sim = Simulator.start(SimulatorConfig(request_log=log / "requests.jsonl"))
    monkeypatch.setenv("CLOUDSTACK_ENDPOINT", sim.endpoint)
    monkeypatch.setenv("CLOUDSTACK_KEY", sim.api_key)
    monkeypatch.setenv("CLOUDSTACK_SECRET", secret or sim.secret)
    return sim


def env_key_without_secret(ws: Workspace, mp: pytest.MonkeyPatch) -> Result:
    mp.setenv("CLOUDSTACK_ENDPOINT", "http://127.0.0.1:9/client/api")
    mp.setenv("CLOUDSTACK_KEY", "k")
    return ws.run("up", "-f", str(_spec(ws)))


def env_secret_without_endpoint(ws: Workspace, mp: pytest.MonkeyPatch) -> Result:
    mp.setenv("CLOUDSTACK_KEY", "k")
    mp.setenv("CLOUDSTACK_SECRET", "s")
    return ws.run("up", "-f", str(_spec(ws)))


def ini_missing_section(ws: Workspace, mp: pytest.MonkeyPatch) -> Result:
    _ini(ws, mp, "[other]\nendpoint = http://x/client/api\nkey = k\nsecret = s\n")
    return ws.run("up", "-f", str(_spec(ws)))


def ini_missing_secret(ws: Workspace, mp: pytest.MonkeyPatch) -> Result:
    _ini(ws, mp, "[prod]\nendpoint = http://x/client/api\nkey = k\n")
    return ws.run("up", "-f", str(_spec(ws)))


def ini_garbage(ws: Workspace, mp: pytest.MonkeyPatch) -> Result:
    _ini(ws, mp, "this is = not [an ini\n\x00\n")
    return ws.run("up", "-f", str(_spec(ws)))


def ini_endpoint_not_url(ws: Workspace, mp: pytest.MonkeyPatch) -> Result:
    _ini(ws, mp, "[prod]\nendpoint = cloud.example.com\nkey = k\nsecret = s\n")
    return ws.run("up", "-f", str(_spec(ws)))


def endpoint_dns_unknown(ws: Workspace, mp: pytest.MonkeyPatch) -> Result:
    _ini(ws, mp, "[prod]\nendpoint = http://no-such-host.invalid/client/api\nkey = k\nsecret = s\n")
    return ws.run("up", "-f", str(_spec(ws)))


def wrong_secret(ws: Workspace, mp: pytest.MonkeyPatch) -> Result:
    sim = _sim_env(ws, mp, secret="not-the-secret")
    try:
        return ws.run("up", "-f", str(_spec(ws)))
    finally:
        sim.stop()


def skewed_clock(ws: Workspace, mp: pytest.MonkeyPatch) -> Result:
    """This machine's clock an hour behind: signature v3 `expires` lies in the past."""
    import datetime as dt
    import time as real_time

    import stackfleet.provisioners.cloudstack.connection as conn_mod
    import stackfleet.provisioners.cloudstack.signing as signing_mod

    hour = dt.timedelta(hours=1)

    class Behind(dt.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return dt.datetime.now(tz) - hour

    names = [n for n in dir(real_time) if not n.startswith("_")]
    behind = types.SimpleNamespace(**{n: getattr(real_time, n) for n in names})
    behind.time = lambda: real_time.time() - 3600
    sim = _sim_env(ws, mp)
    mp.setattr(signing_mod, "datetime", Behind)
    mp.setattr(conn_mod, "time", behind)
    try:
        return ws.run("up", "-f", str(_spec(ws)))
    finally:
        sim.stop()


def profile_without_cluster(ws: Workspace, mp: pytest.MonkeyPatch) -> Result:
    return ws.run("status", "--profile", "simulator")


def missing_spec_file(ws: Workspace, mp: pytest.MonkeyPatch) -> Result:
    return ws.run("up", "-f", str(ws.root / "nope.yaml"))


def down_without_yes(ws: Workspace, mp: pytest.MonkeyPatch) -> Result:
    spec = _spec(ws, "simulator")
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    before = len(ws.requests())
    result = ws.run("down", "-f", str(spec))
    ws.home.joinpath("simulator", "requests.jsonl").write_text(
        "".join(
            line + "\n"
            for line in ws.home.joinpath("simulator", "requests.jsonl")
            .read_text()
            .splitlines()[before:]
        )
    )
    return result


def spec_is_directory(ws: Workspace, mp: pytest.MonkeyPatch) -> Result:
    return ws.run("up", "-f", str(ws.root))


def bad_fault_knob(ws: Workspace, mp: pytest.MonkeyPatch) -> Result:
    mp.setenv("STACKFLEET_SIMULATOR_FAULTS", "meteor=0.5")
    return ws.run("up", "-f", str(_spec(ws, "simulator")))


CASES: dict[str, tuple[Callable[[Workspace, pytest.MonkeyPatch], Result], int, str]] = {
    "env_key_without_secret": (env_key_without_secret, 2, "CLOUDSTACK_SECRET"),
    "env_secret_without_endpoint": (env_secret_without_endpoint, 2, "CLOUDSTACK_ENDPOINT"),
    "ini_missing_section": (ini_missing_section, 2, "no [prod] section"),
    "ini_missing_secret": (ini_missing_secret, 2, "missing secret"),
    "ini_garbage": (ini_garbage, 2, "cannot read"),
    "ini_endpoint_not_url": (ini_endpoint_not_url, 2, "not an http(s) URL"),
    "endpoint_dns_unknown": (endpoint_dns_unknown, 1, "cannot reach"),
    "wrong_secret": (wrong_secret, 2, "refused the API key or signature"),
    "skewed_clock": (skewed_clock, 2, "clock"),
    "profile_without_cluster": (profile_without_cluster, 2, "--cluster"),
    "missing_spec_file": (missing_spec_file, 2, "no such spec file"),
    "down_without_yes": (down_without_yes, 2, "refusing without --yes"),
    "spec_is_directory": (spec_is_directory, 2, "spec"),
    "bad_fault_knob": (bad_fault_knob, 2, "meteor"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_environment(ws: Workspace, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    action, code, fragment = CASES[case]
    _check(ws, action(ws, monkeypatch), code, fragment)


def test_corpus_is_big_enough() -> None:
    assert len(SPEC_FILES) + len(CASES) + len(HOSTILE) >= 50


# --- hostile specs: refused in one line within a memory and CPU ceiling ---------------
# Each is written by the test (the big ones would bloat the repository) and checked by
# `python -m stackfleet validate` in a subprocess whose address space and CPU time are
# capped (setrlimit), so a spec that made loading grow or spin would hit the ceiling
# (MemoryError, exit 1, or SIGXCPU) instead of exiting 2 with its line.
MEMORY_CEILING = 512 * 1024 * 1024
CPU_CEILING_S = 20
PREAMBLE = "name: bad\ncloud: {profile: simulator, zone: sim-zrh-1}\nroles: {etcd: {count: 1}}\n"


def _billion_laughs() -> bytes:
    """A 1 KB file whose aliases expand to 9**9 strings (a gigabyte and more)."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    return (PREAMBLE + "\n".join(lines) + "\n").encode()


def _deep_flow() -> bytes:
    return (PREAMBLE + "network: " + "[" * 5000 + "]" * 5000 + "\n").encode()


def _deep_block() -> bytes:
    return (
        PREAMBLE + "".join(" " * i + f"k{i}:\n" for i in range(1000)) + " " * 1000 + "x\n"
    ).encode()


def _big() -> bytes:
    return (PREAMBLE + "# padding\n" * (1024 * 1024 // 10 + 1)).encode()


def _binary() -> bytes:
    return PREAMBLE.encode() + bytes(range(256)) * 64


HOSTILE: dict[str, tuple[Callable[[], bytes] | None, str]] = {
    "billion_laughs": (_billion_laughs, "aliases (*name) are not allowed in a spec"),
    "deep_flow_nesting": (_deep_flow, "nested more than 32 levels deep"),
    "deep_block_nesting": (_deep_block, "nested more than 32 levels deep"),
    "bigger_than_1_MiB": (_big, "larger than 1 MiB"),
    "binary": (_binary, "not UTF-8 text"),
    "endless_dev_zero": (None, "larger than 1 MiB"),  # -f /dev/zero: reading must stop
}


def _ceiling() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CEILING, MEMORY_CEILING))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_CEILING_S, CPU_CEILING_S))


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_spec_is_refused_within_limits(ws: Workspace, case: str) -> None:
    make, fragment = HOSTILE[case]
    path = Path("/dev/zero")
    if make is not None:
        path = ws.root / f"{case}.yaml"
        path.write_bytes(make())
    proc = ws.subprocess("validate", "-f", str(path), preexec_fn=_ceiling)
    try:
        out, err = proc.communicate(timeout=120)  # a hang guard, not a speed assertion
    finally:
        proc.kill()
    assert proc.returncode == 2, (proc.returncode, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err[-2000:]
    assert lines[0].startswith(f"error: {path}"), lines[0]
    assert fragment in lines[0], lines[0]
