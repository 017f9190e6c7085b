"""`simulator serve --detach`, `simulator env` and `simulator stop`, as a shell user runs them.

Real: the stackfleet CLI in its own processes, the detached server as a separate OS process in
its own session, bash's `eval` of what `simulator env` prints, `stackfleet list` and the `cs`
CLI (PyPI `cs`, unmodified) reading the exported variables, HTTP over loopback, SQLite state
in a file. Every server a test starts is killed in a `finally` if `stop` did not end it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from stackfleet.simulator import detach

CS = Path(sys.executable).with_name("cs")
OUTPUT_DOC = Path(__file__).resolve().parents[2] / "docs" / "output.md"
pytestmark = pytest.mark.timeout(120)


def _stackfleet(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stackfleet", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


@pytest.fixture
def home(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An environment with its own state home and no cloud credentials of the user's."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "STACKFLEET_HOME": str(tmp_path / "sf"),
        "CLOUDSTACK_THEME": "",
    }
    where = detach.Files(tmp_path / "sf" / "simulator" / "detached")
    try:
        yield env
    finally:
        pid = detach.running_pid(where) if where.directory.exists() else None
        if pid is not None:
            os.killpg(pid, signal.SIGKILL)


def _pid_alive(pid: int) -> bool:
    """A zombie nobody reaped yet has ended, too."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


def _documented_keys(command: str) -> set[str]:
    """The keys of the JSON example under `## `<command>`` in docs/output.md."""
    section = re.search(
        rf"^## `{re.escape(command)}`\n(.*?)(?=^## |\Z)", OUTPUT_DOC.read_text(), re.M | re.S
    )
    assert section, f"docs/output.md has no section for {command}"
    block = re.search(r"```json\n(.*?)```", section.group(1), re.S)
    assert block
    return set(json.loads(block.group(1)))


def _port_open(endpoint: str) -> bool:
    url = urlsplit(endpoint)
    assert url.hostname == "127.0.0.1"
    with socket.socket() as sock:
        return sock.connect_ex((url.hostname, url.port or 80)) == 0


def test_detach_env_eval_then_clients_work_then_stop_ends_it(
    home: dict[str, str], tmp_path: Path
) -> None:
    started = _stackfleet(
        home, "simulator", "serve", "--detach", "--port", "0", "--state", str(tmp_path / "c.db")
    )
    assert started.returncode == 0, started.stderr
    assert "running in the background" in started.stdout
    where = detach.Files(Path(home["STACKFLEET_HOME"]) / "simulator" / "detached")
    pid = detach.running_pid(where)
    assert pid is not None and f"pid {pid}" in started.stdout
    record = json.loads(where.record.read_text())
    assert stat.S_IMODE(where.record.stat().st_mode) == 0o600  # it holds the secret
    assert stat.S_IMODE(where.log.stat().st_mode) == 0o600
    assert record["secret"] not in where.log.read_text()
    assert record["secret"] not in started.stdout + started.stderr

    script = f"""
        set -e
        eval "$({sys.executable} -m stackfleet simulator env)"
        echo "endpoint=$CLOUDSTACK_ENDPOINT"
        {sys.executable} -m stackfleet list -o json
        {CS} listZones
    """
    shell = subprocess.run(
        ["bash", "-c", script], env=home, capture_output=True, text=True, timeout=90
    )
    assert shell.returncode == 0, shell.stderr
    first, rest = shell.stdout.split("\n", 1)
    assert first == f"endpoint={record['endpoint']}"
    clusters, _, zones = rest.partition("]")
    assert json.loads(clusters + "]") == []  # a fresh cloud, reached with the exported keys
    assert {z["name"] for z in json.loads(zones)["zone"]} == {"sim-gva-1", "sim-zrh-1"}

    again = _stackfleet(home, "simulator", "serve", "--detach", "--port", "0")
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1 and f"runs already (pid {pid})" in again.stderr
    assert detach.running_pid(where) == pid  # the first one serves on, alone

    stopped = _stackfleet(home, "simulator", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == f"simulator stopped (pid {pid})"  # SIGTERM was enough
    assert not _pid_alive(pid)
    assert not _port_open(record["endpoint"])
    assert not where.pid.exists() and not where.record.exists()

    twice = _stackfleet(home, "simulator", "stop")
    assert (twice.returncode, twice.stdout) == (0, "no detached simulator was running\n")


def test_env_without_a_server_is_one_line_and_exit_1(home: dict[str, str]) -> None:
    result = _stackfleet(home, "simulator", "env")
    assert result.returncode == 1
    assert result.stdout == ""  # nothing for `eval` to run
    assert result.stderr.count("\n") == 1
    assert "no detached simulator runs" in result.stderr
    assert "simulator serve --detach" in result.stderr


def test_a_stale_pid_file_is_not_a_running_server(home: dict[str, str]) -> None:
    """A pid file left by a kill -9, naming a live process that is not the server (ours)."""
    where = detach.files(Path(home["STACKFLEET_HOME"]) / "simulator" / "detached")
    where.pid.write_text(f"{os.getpid()}\n")
    result = _stackfleet(home, "simulator", "env")
    assert result.returncode == 1 and "no detached simulator runs" in result.stderr
    started = _stackfleet(home, "simulator", "serve", "--detach", "--port", "0")
    assert started.returncode == 0, started.stderr
    assert detach.running_pid(where) not in (None, os.getpid())
    env = _stackfleet(home, "simulator", "env", "-o", "json")
    variables = json.loads(env.stdout)
    assert set(variables) == _documented_keys("simulator env")
    stopped = _stackfleet(home, "simulator", "stop", "-o", "json")
    assert stopped.returncode == 0
    result = json.loads(stopped.stdout)
    assert set(result) == _documented_keys("simulator stop")
    assert result["stopped"] is True and result["killed"] is False
    assert not _port_open(variables["CLOUDSTACK_ENDPOINT"])
    nothing = json.loads(_stackfleet(home, "simulator", "stop", "-o", "json").stdout)
    assert nothing == {"pid": None, "stopped": False, "killed": False}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--latency", "deployVirtualMachine=soon"], 2, "not a number of seconds"),
        (["--state", "{tmp}/corrupt.db"], 2, "file is not a database"),
    ],
)
def test_a_server_that_cannot_start_is_one_line_and_leaves_nothing(
    home: dict[str, str], tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    (tmp_path / "corrupt.db").write_bytes(b"this is not sqlite" * 100)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = _stackfleet(home, "simulator", "serve", "--detach", "--port", "0", *args)
    assert result.returncode == code
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert "Traceback" not in result.stderr
    env = _stackfleet(home, "simulator", "env")
    assert env.returncode == 1 and "no detached simulator runs" in env.stderr


def test_credentials_given_reach_the_server_but_not_its_command_line(
    home: dict[str, str],
) -> None:
    started = _stackfleet(
        home, "simulator", "serve", "--detach", "--port", "0", "--api-key", "k-1",
        "--secret", "s3cret-given",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    where = detach.Files(Path(home["STACKFLEET_HOME"]) / "simulator" / "detached")
    pid = detach.running_pid(where)
    assert pid is not None
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"s3cret-given" not in argv and b"--detach" not in argv
    env = _stackfleet(home, "simulator", "env")
    assert "export CLOUDSTACK_KEY=k-1\n" in env.stdout
    assert "export CLOUDSTACK_SECRET=s3cret-given\n" in env.stdout
    assert _stackfleet(home, "simulator", "stop").returncode == 0
    assert not _pid_alive(pid)


def test_stop_kills_a_server_that_ignores_sigterm(tmp_path: Path) -> None:
    """Real: a process in its own session that holds the pid file and ignores SIGTERM, as a
    wedged server would; `stop` (with a short grace) kills its group and cleans up."""
    where = detach.files(tmp_path / "detached")
    code = (
        "import signal, sys, time\n"
        "from pathlib import Path\n"
        "from stackfleet.simulator import detach\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "held = detach.claim(detach.files(Path(sys.argv[1])))\n"
        "print('claimed', flush=True)\n"
        "time.sleep(600)\n"
    )
    wedged = subprocess.Popen(
        [sys.executable, "-c", code, str(where.directory)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert wedged.stdout is not None and wedged.stdout.readline() == "claimed\n"
        assert detach.running_pid(where) == wedged.pid
        stopped = detach.stop(where, grace_s=1.0)
        assert stopped == detach.Stopped(wedged.pid, killed=True)
        assert wedged.wait(timeout=10) == -signal.SIGKILL
        assert not where.pid.exists()
    finally:
        if wedged.poll() is None:
            os.killpg(wedged.pid, signal.SIGKILL)
            wedged.wait()
        if wedged.stdout is not None:
            wedged.stdout.close()
