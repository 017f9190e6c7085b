"""`up` and `down` at a terminal: what the screen shows, read as a terminal would draw it.

Real: the stackfleet CLI as its own process on a pseudo-terminal (pexpect), the embedded
CloudStack simulator it starts (HTTP on loopback, signed requests, SQLite state, jobs
that take the time STACKFLEET_SIMULATOR_LATENCY gives them), rich's live display, and
a VT100 screen (pyte) that applies every cursor move and erase the CLI sent, so what
is checked is what a person would see, not the byte stream. Simulated: the VMs.
"""

from __future__ import annotations

import os
import re
import sys

import pexpect
import pyte
import pytest
from sf_testkit import Workspace, mutating

ROWS, COLUMNS = 200, 120  # tall enough that nothing scrolls off: the whole run is on screen
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
# Deploys last longer than the progress interval, so a wait must speak up meanwhile.
LATENCY = "default=0,deployVirtualMachine=1.5,startVirtualMachine=0.5"
INTERVAL = "0.5"


def spawn(ws: Workspace, *args: str) -> pexpect.spawn:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(TERM="xterm-256color", STACKFLEET_PROGRESS_INTERVAL=INTERVAL)
    return pexpect.spawn(
        sys.executable,
        ["-m", "stackfleet", *args],
        env=env,
        cwd=str(ws.root),
        encoding="utf-8",
        dimensions=(ROWS, COLUMNS),
        timeout=120,
    )


def screen_of(output: str) -> list[str]:
    """The terminal's lines after drawing `output`, blank ones left out."""
    screen = pyte.Screen(COLUMNS, ROWS)
    screen.set_mode(pyte.modes.LNM)  # the tty turns \n into \r\n; pyte does it here
    pyte.Stream(screen).feed(output)
    return [line.rstrip() for line in screen.display if line.strip()]


def run_to_end(child: pexpect.spawn) -> str:
    child.expect(pexpect.EOF)
    child.close()
    return str(child.before)


@pytest.fixture
def slow_jobs(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("STACKFLEET_SIMULATOR_LATENCY", LATENCY)
    return ws


def test_up_at_a_terminal_shows_steps_machine_counts_and_time(slow_jobs: Workspace) -> None:
    ws = slow_jobs
    spec = ws.spec("tty", roles={"workers": {"count": 2}})  # 3 etcd + 1 control + 2 = 6
    raw = run_to_end(child := spawn(ws, "up", "-f", str(spec)))
    assert child.exitstatus == 0, raw
    lines = screen_of(raw)
    text = "\n".join(lines)

    # Each step once, stamped with the time since the start (the rows are not redrawn twice).
    stamped = [line for line in lines if re.match(r"\[\s*\d", line)]
    assert len(stamped) == len(set(stamped)), text
    steps = [re.sub(r"^\[\s*[\dhms.]+\] ", "", line) for line in stamped]
    assert steps.count("reading the cloud") == 1, text
    assert steps.count("deploying 6 VM(s)") == 1, text

    # Counted in machines, up to all of them; never in API jobs (a deploy and a start
    # are two jobs), never against an unknown total.
    counts = re.findall(r"(\d+) machines to deploy and start: (\d+)/(\d+)", text)
    assert counts, text
    assert {(n, total) for n, _, total in counts} == {("6", "6")}, counts
    assert counts[-1][1:] == ("6", "6"), counts
    assert "None" not in raw

    # The deploys outlast the interval: the wait said so, with its time.
    assert re.search(
        r"still waiting for 6 machines to deploy and start: \d/6 \[\d+s elapsed\]", text
    )
    assert re.search(r"^done in \d+\.\ds$", text, re.M), text
    # The note printed while the status line was up is still on the screen.
    assert "not waiting for etcd health" in text
    # The status line went away at the end; the result follows the steps.
    assert not any(ch in text for ch in SPINNER), text
    assert text.index("done in") < text.index("tty-worker-2"), text


def test_prompts_at_a_terminal_show_the_question_and_no_changes_nothing(
    slow_jobs: Workspace,
) -> None:
    ws = slow_jobs
    assert (
        ws.run("up", "-q", "-f", str(ws.spec("ask", roles={"workers": {"count": 2}}))).exit_code
        == 0
    )
    smaller = ws.spec("ask", roles={"workers": {"count": 1}})
    before = len(ws.requests())

    # Scaling down destroys a machine: `up` shows the plan and asks, the display paused.
    child = spawn(ws, "up", "-f", str(smaller))
    child.expect(r"\[y/N\]: ")
    asked = screen_of(str(child.before) + str(child.after))
    assert asked[-1] == "Destroy 1 VM(s) (ask-worker-2)? [y/N]:", asked
    assert "  delete    machine      ask-worker-2  Running" in asked, asked
    child.sendline("n")
    answered = run_to_end(child)
    assert child.exitstatus == 2, answered
    assert "error: cancelled: nothing was changed" in screen_of(answered)

    # `down` asks too, and its question keeps its [y/N].
    child = spawn(ws, "down", "-f", str(smaller))
    child.expect(r"\[y/N\]: ")
    asked = screen_of(str(child.before) + str(child.after))
    assert asked[-1] == "Delete cluster(s) ask and everything in them? [y/N]:", asked
    child.sendline("n")
    answered = run_to_end(child)
    assert child.exitstatus == 2, answered

    # Nothing changed in the cloud: no mutating call, both workers still there.
    assert mutating(ws.requests()[before:]) == []
    status = ws.run("status", "-f", str(smaller), "-o", "json").json()
    assert sorted(n["name"] for n in status["nodes"] if n["role"] == "worker") == [
        "ask-worker-1",
        "ask-worker-2",
    ]
