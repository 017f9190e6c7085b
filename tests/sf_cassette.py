"""Cassette plumbing shared by the providers' replayed up/status/down tests (imported by name).

Each provider's test keeps what is its own (how a request is compared and scrubbed, which cloud
it records against); this module holds the run both replay: pinned run-to-run values, the
small spec, and up/status/down with what a user sees checked.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import vcr
import yaml
from sf_testkit import Workspace

RECORD = os.environ.get("STACKFLEET_RECORD") == "1"
# The replay's endpoint port (discard, nothing listens): vcrpy answers every request to it.
REPLAY_PORT = 9


def recorder(match_on: list[str], same_call: Callable[[Any, Any], None], **options: Any) -> vcr.VCR:
    """A vcrpy recorder: records everything under STACKFLEET_RECORD=1, else only replays."""
    v = vcr.VCR(
        record_mode="all" if RECORD else "none",
        match_on=[*match_on, "same_call"],
        decode_compressed_response=True,
        **options,
    )

    def ours_and_same(live: Any, recorded: Any) -> None:
        # vcrpy patches HTTP for the whole process: a thread an earlier test left running
        # (its reads to its own, closed simulator) would be answered from this cassette and
        # take an answer this replay needs (CI saw it: "all 8 have been played back").
        if not RECORD:
            assert urlparse(live.uri).port == REPLAY_PORT
        same_call(live, recorded)

    v.register_matcher("same_call", ours_and_same)
    return v


def pin_for_cassette(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fix what differs between a recording and its replay, or races inside vcrpy."""
    # The lock's holder id (host:pid:time) comes back in recorded answers: pin it, so that
    # on replay the recorded lock is this run's own.
    monkeypatch.setattr(
        "stackfleet.provisioners.lock.holder_id", lambda: "cassette-recorder:1:1700000000"
    )
    # vcrpy is not thread-safe: requests sent at once from the job pool's threads are lost
    # from a recording. The recorded session sends one request at a time.
    monkeypatch.setattr("stackfleet.provisioners.operations.SUBMIT_THREADS", 1)


def require_cassette(cassette: Path) -> None:
    if not cassette.exists():
        pytest.fail(f"{cassette} missing: record it with STACKFLEET_RECORD=1")


def cassette_spec(ws: Workspace, cloud: dict[str, str], role: dict[str, Any]) -> Path:
    """A one-etcd, one-control, one-worker spec named 'cassette'; `role` is each role's entry."""
    data = {
        "name": "cassette",
        "cloud": cloud,
        "roles": {
            "etcd": {"count": 1, **role},
            "control": {"count": 1, **role},
            "workers": {"count": 1, **role},
        },
        "access": {"ssh_cidrs": ["203.0.113.0/24"]},
    }
    path = ws.root / "cassette.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def up_status_down(ws: Workspace, spec: Path, v: vcr.VCR, cassette: Path) -> None:
    """up, status, down and status again inside the cassette, checking what each reports."""
    if RECORD:
        cassette.unlink(missing_ok=True)
    with v.use_cassette(str(cassette)):
        # --no-wait: the simulator's machines run no etcd to ask (and no test may reach them).
        up = ws.run("up", "-f", str(spec), "--no-wait", "-o", "json")
        assert up.exit_code == 0, up.stderr
        status = ws.run("status", "-f", str(spec), "-o", "json").json()
        assert [(n["name"], n["state"]) for n in status["nodes"]] == [
            ("cassette-etcd-1", "Running"),
            ("cassette-control-1", "Running"),
            ("cassette-worker-1", "Running"),
        ]
        down = ws.run("down", "-f", str(spec), "--yes", "-o", "json")
        assert down.exit_code == 0, down.stderr
        assert down.json()[0]["machines"] == 3
        after = ws.run("status", "-f", str(spec), "-o", "json")
        assert after.exit_code == 0, after.stderr  # a replay short of answers says which here
        gone = after.json()
        assert gone["exists"] is False
