"""A `simulator serve --detach`ed server: its files, whether it runs, and how it ends.

Files in <state home>/simulator/detached/ (the folder 0700):

- serve.pid: the server's pid. The server holds an exclusive flock on it while it runs,
  so a file left by a crash, a kill -9 or a reused pid is never taken for a live server.
- serve.json: endpoint and credentials (0600: it holds the API secret), written once the
  server listens; `simulator env` reads it.
- serve.log: the server's stdout and stderr. It never holds the secret: a detached
  server prints its endpoint only.

The server removes serve.pid and serve.json when it ends; `simulator stop` removes them
if it had to kill it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from stackfleet import state
from stackfleet.errors import StackfleetError

# Set by `serve --detach` in its child's environment: the folder it reports to.
CHILD_ENV = "_STACKFLEET_SERVE_DETACHED"
# How long a stop waits for the server's own clean-up (a QEMU mini-cloud removes its guests
# and namespace) before SIGKILL, and then for the kill.
STOP_GRACE_S = 30.0
KILL_GRACE_S = 5.0


class NotRunning(StackfleetError):
    """No detached simulator runs (exit 1)."""


class AlreadyRunning(StackfleetError):
    """A detached simulator runs already: one at a time per state home (exit 1)."""


@dataclass(frozen=True)
class Record:
    """What `simulator env` hands to a shell. `node_netns` only for the QEMU hypervisor."""

    pid: int
    endpoint: str
    api_key: str
    secret: str
    node_netns: str | None = None
    metadata_url: str | None = None
    password_url: str | None = None

    def environment(self) -> dict[str, str]:
        env = {
            "CLOUDSTACK_ENDPOINT": self.endpoint,
            "CLOUDSTACK_KEY": self.api_key,
            "CLOUDSTACK_SECRET": self.secret,
        }
        if self.node_netns:
            # Guests are reachable only inside this namespace; stackfleet dials them there.
            env["STACKFLEET_NODE_NETNS"] = self.node_netns
        return env


@dataclass(frozen=True)
class Files:
    directory: Path

    @property
    def pid(self) -> Path:
        return self.directory / "serve.pid"

    @property
    def record(self) -> Path:
        return self.directory / "serve.json"

    @property
    def log(self) -> Path:
        return self.directory / "serve.log"


def files(directory: Path | None = None) -> Files:
    """The detached server's files (the folder is made, 0700)."""
    if directory is None:
        directory = state.private_dir(state.private_dir(state.home()) / "simulator") / "detached"
    return Files(state.private_dir(directory))


# --- the server's side ---------------------------------------------------------------


def claim(where: Files) -> IO[str]:
    """Take the pid file for this process; keep the returned file open while serving.

    A checker holds a shared lock for an instant, so retry briefly before concluding that
    another server holds it."""
    # Not a `with`: the caller keeps it open (and locked) for as long as it serves.
    handle = open(os.open(where.pid, os.O_RDWR | os.O_CREAT, 0o600), "r+")  # noqa: SIM115
    for _ in range(20):
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            time.sleep(0.05)
    else:
        other = handle.read().strip()
        handle.close()
        raise AlreadyRunning(f"a detached simulator runs already (pid {other or '?'})")
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def publish(where: Files, record: Record) -> None:
    """Write the record (0600) in one rename, so a reader never sees half of it."""
    partial = where.record.with_suffix(".json.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w") as out:
        json.dump(asdict(record), out)
    os.replace(partial, where.record)


def release(where: Files, handle: IO[str]) -> None:
    """Remove the record and the pid file, then drop the lock (still held: no race)."""
    for path in (where.record, where.pid):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    handle.close()


# --- everybody else's side -----------------------------------------------------------


def running_pid(where: Files) -> int | None:
    """The pid of the live detached server, or None (a stale pid file does not count)."""
    try:
        with open(where.pid) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = handle.read().strip()
                return int(text) if text.isdigit() else None
            return None  # nobody holds it: the server that wrote it is gone
    except FileNotFoundError:
        return None


def current(where: Files) -> Record:
    """The running server's record; NotRunning (one line) if there is none yet."""
    pid = running_pid(where)
    if pid is None:
        raise NotRunning(
            "no detached simulator runs; start one with `stackfleet simulator serve --detach`"
        )
    try:
        record = Record(**json.loads(where.record.read_text()))
    except FileNotFoundError:
        record = None
    if record is None or record.pid != pid:
        raise NotRunning(f"the detached simulator (pid {pid}) is still starting; try again")
    return record


def remove_stale(where: Files) -> None:
    """Files of a server that is gone (crash, kill -9)."""
    if running_pid(where) is None:
        for path in (where.record, where.pid):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


@dataclass(frozen=True)
class Stopped:
    pid: int | None  # None: nothing ran
    killed: bool  # it ignored SIGTERM for STOP_GRACE_S and got SIGKILL


def stop(
    where: Files, grace_s: float = STOP_GRACE_S, sleep: Callable[[float], None] = time.sleep
) -> Stopped:
    """SIGTERM, wait for the server's own clean-up, SIGKILL after `grace_s`."""
    pid = running_pid(where)
    if pid is None:
        remove_stale(where)
        return Stopped(None, False)
    _signal(pid, signal.SIGTERM)
    if _wait_gone(where, grace_s, sleep):
        return Stopped(pid, False)
    # Its own session (serve --detach starts it so): the group is the server and what
    # it started that did not leave the group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    _signal(pid, signal.SIGKILL)
    if not _wait_gone(where, KILL_GRACE_S, sleep):
        raise StackfleetError(f"the detached simulator (pid {pid}) survived SIGKILL")
    remove_stale(where)
    return Stopped(pid, True)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        raise StackfleetError(
            f"cannot signal the detached simulator (pid {pid}): {os.strerror(errno.EPERM)}; "
            "stop it as the user who started it"
        ) from exc


def _wait_gone(where: Files, within_s: float, sleep: Callable[[float], None]) -> bool:
    # The lock goes when the process ends (its files close before it is reaped), so a
    # zombie nobody reaps still counts as gone.
    deadline = time.monotonic() + within_s
    while running_pid(where) is not None:
        if time.monotonic() >= deadline:
            return False
        sleep(0.1)
    return True
