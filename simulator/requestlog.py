"""The JSONL request log: command, parameters without secrets, status, duration."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

_SECRET = {"apikey", "signature", "secretkey", "secret", "password", "privatekey"}
_SIZE_ONLY = {"userdata", "publickey"}


def scrub(params: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        low = key.lower()
        if low in _SECRET:
            continue
        out[key] = f"<{len(value)} chars>" if low in _SIZE_ONLY else value
    return out


class RequestLog:
    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None
        if path is not None:
            # 0600: commands and parameters are the account's business.
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def write(
        self,
        method: str,
        command: str | None,
        params: dict[str, str],
        status: int,
        started: float,
        client: str,
        note: str | None = None,
    ) -> None:
        if self._fd is None:
            return
        entry: dict[str, Any] = {
            "ts": round(time.time(), 3),
            "method": method,
            "command": command,
            "params": scrub(params),
            "status": status,
            "duration_ms": round((time.monotonic() - started) * 1000, 2),
            "client": client,
        }
        if note:
            entry["note"] = note
        line = (json.dumps(entry, sort_keys=True) + "\n").encode()
        with self._lock:
            os.write(self._fd, line)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
