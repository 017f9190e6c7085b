"""Progress off a terminal (a CI log): a long wait is never silent, counts are machines.

Real: the stackfleet CLI as its own process with stderr on a pipe, the embedded
CloudStack simulator it starts (HTTP on loopback, signed requests, SQLite state, async
jobs lasting what STACKFLEET_SIMULATOR_LATENCY says), the display's ticker thread.
Simulated: the VMs.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import threading

import pytest
from sf_testkit import Workspace

from stackfleet.cli.progress import PlainDisplay

STILL = re.compile(r"^\[\s*[\d.ms]+\] still waiting for (.+) \[(\d+)s elapsed\]$", re.M)
COUNT = re.compile(r"^\[\s*[\d.ms]+\]   (\d+) machines to ([a-z ]+): (\d+)/(\d+)$", re.M)


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stackfleet", *args],
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_up_in_a_log_says_what_it_still_waits_for(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each deploy job takes 2 s and each start 1 s; the display speaks every 0.3 s.
    monkeypatch.setenv(
        "STACKFLEET_SIMULATOR_LATENCY", "default=0,deployVirtualMachine=2,startVirtualMachine=1"
    )
    spec = ws.spec("ci", roles={"workers": {"count": 1}})  # 3 etcd + 1 control + 1 = 5
    up = run_cli("up", "-f", str(spec), STACKFLEET_PROGRESS_INTERVAL="0.3")
    assert up.returncode == 0, up.stderr
    log = up.stderr

    # Between "deploying" and the first machine done, the log is not silent.
    deploying = log.index("deploying 5 VM(s)")
    first_done = COUNT.search(log).start()  # type: ignore[union-attr]
    quiet_part = log[deploying:first_done]
    waits = STILL.findall(quiet_part)
    assert len(waits) >= 2, log
    assert all(w.startswith("5 machines to deploy and start: 0/5") for w, _ in waits), waits
    assert [int(s) for _, s in waits] == sorted(int(s) for _, s in waits), waits

    # One unit: every count is in machines out of 5, rising to 5/5.
    counts = [(int(n), verb, int(d), int(t)) for n, verb, d, t in COUNT.findall(log)]
    assert counts and all(n == t == 5 for n, _, _, t in counts), counts
    done = [d for _, _, d, _ in counts]
    assert done == sorted(done) and done[-1] == 5, counts
    assert "None" not in log
    assert re.search(r"^done in [\d.ms]+$", log, re.M), log
    # Progress is for people: stdout holds the result only.
    assert "still waiting" not in up.stdout and "machines to" not in up.stdout

    # -q: no progress at all, the result still printed.
    down = run_cli("down", "-q", "--yes", "-f", str(spec), STACKFLEET_PROGRESS_INTERVAL="0.3")
    assert down.returncode == 0, down.stderr
    assert down.stderr == "" and "ci" in down.stdout


def test_a_bad_interval_is_one_line(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKFLEET_PROGRESS_INTERVAL", "ten")
    result = ws.run("up", "-f", str(ws.spec("badint")))
    assert result.exit_code == 2
    assert result.stderr == (
        "error: STACKFLEET_PROGRESS_INTERVAL='ten': give a number of seconds above 0, e.g. 10\n"
    )


def test_the_ticker_stops_with_the_display(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real: the display's ticker thread and clock; stderr is a StringIO."""
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    shown = PlainDisplay(interval=0.05)
    shown.start()
    shown.phase("waiting for something slow")
    pause = threading.Event()
    for _ in range(200):  # until the ticker has spoken twice (10 s at most)
        if out.getvalue().count("still waiting for something slow") >= 2:
            break
        pause.wait(0.05)
    shown.close(finished=True)
    assert out.getvalue().count("still waiting for something slow") >= 2, out.getvalue()
    said = out.getvalue()
    assert said.splitlines()[-1].startswith("done in ")
    assert not any(t.name == "stackfleet-progress" for t in threading.enumerate())
    # Nothing after the end, however long one waits for it.
    pause.wait(0.3)
    assert out.getvalue() == said
