"""SQLite state: a small document store (kind, id, JSON) plus the job table.

Several processes may open one file at once (the CLI starts a simulator per invocation):
WAL, a busy timeout and one short IMMEDIATE transaction per API request keep them
consistent. `state_path=None` keeps everything in memory for one process.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stackfleet.errors import BadInput
from stackfleet.simulator.hypervisor import Hypervisor, RunsNothing

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS docs (
    kind TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    instance_id TEXT,
    created REAL NOT NULL,
    start_at REAL NOT NULL,
    finish_at REAL NOT NULL,
    applied INTEGER NOT NULL DEFAULT 0,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_pending ON jobs (applied, finish_at);
CREATE INDEX IF NOT EXISTS jobs_instance ON jobs (instance_id, finish_at);
"""

Doc = dict[str, Any]


class Tx:
    """One transaction's view of the store: the only way commands touch state."""

    def __init__(self, conn: sqlite3.Connection, hypervisor: Hypervisor) -> None:
        self.conn = conn
        # Carries out finished VM jobs on real guests (or on nothing, by default).
        self.hypervisor = hypervisor

    def get(self, kind: str, id_: str) -> Doc | None:
        row = self.conn.execute(
            "SELECT doc FROM docs WHERE kind=? AND id=?", (kind, id_)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def all(self, kind: str) -> list[Doc]:
        rows = self.conn.execute("SELECT doc FROM docs WHERE kind=? ORDER BY seq", (kind,))
        return [json.loads(r[0]) for r in rows]

    def prefixed(self, kind: str, prefix: str) -> list[Doc]:
        """Documents whose id starts with `prefix` (an index range scan, not a full scan)."""
        rows = self.conn.execute(
            "SELECT doc FROM docs WHERE kind=? AND id>=? AND id<? ORDER BY seq",
            (kind, prefix, prefix + "\uffff"),
        )
        return [json.loads(r[0]) for r in rows]

    def put(self, kind: str, doc: Doc) -> None:
        self.conn.execute(
            "INSERT INTO docs (kind, id, seq, doc) VALUES (?, ?, "
            "(SELECT COALESCE(MAX(seq), 0) + 1 FROM docs), ?) "
            "ON CONFLICT (kind, id) DO UPDATE SET doc=excluded.doc",
            (kind, doc["id"], json.dumps(doc, sort_keys=True)),
        )

    def delete(self, kind: str, id_: str) -> None:
        self.conn.execute("DELETE FROM docs WHERE kind=? AND id=?", (kind, id_))

    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    def counter(self, key: str) -> int:
        """A counter shared by every process on the file (instance names like i-2-17-VM)."""
        value = int(self.meta(key) or "0") + 1
        self.set_meta(key, str(value))
        return value


def _retry_locked(step: Callable[[], object], attempts: int = 100) -> None:
    for attempt in range(attempts):
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.1)


class Store:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        # One connection, one lock per process; other processes are kept out by SQLite's
        # own locking (IMMEDIATE transactions + busy_timeout).
        self._lock = threading.Lock()
        self._conn = self._open(path)
        self.hypervisor: Hypervisor = RunsNothing()

    @staticmethod
    def _open(path: Path | None) -> sqlite3.Connection:
        try:
            if path is None:
                conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            else:
                if not path.exists():
                    # Created 0600: the file holds the API secret and users' userdata.
                    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
                conn = sqlite3.connect(
                    str(path), check_same_thread=False, isolation_level=None, timeout=30
                )
                conn.execute("PRAGMA busy_timeout=30000")
                # Two processes opening a new file at once: switching it to WAL answers
                # "database is locked" at once to the second (no busy wait): try again.
                _retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL"))
                conn.execute("PRAGMA synchronous=NORMAL")
            _retry_locked(lambda: conn.executescript(_SCHEMA))
        except (sqlite3.DatabaseError, OSError) as exc:
            raise BadInput(f"cannot use state file {path}: {exc}") from None
        return conn

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(self._conn, self.hypervisor)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def credentials(self, api_key: str | None, secret: str | None) -> tuple[str, str]:
        """The key pair lives in the state file, so restarts on one file keep it."""
        with self.transaction() as tx:
            key = api_key or tx.meta("api_key") or secrets.token_urlsafe(64)
            sec = secret or tx.meta("secret") or secrets.token_urlsafe(64)
            tx.set_meta("api_key", key)
            tx.set_meta("secret", sec)
        return key, sec

    def close(self) -> None:
        with self._lock:
            self._conn.close()
