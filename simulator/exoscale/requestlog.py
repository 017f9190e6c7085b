"""The exoscale simulator's JSONL request log: one line per request, with what the OpenAPI
schemas said of its body and of the answer.

`request_schema` / `response_schema`: "ok", a list of problems, or null when the operation has no
body / the answer is an error (the spec documents no error bodies). Never logged: the
Authorization header (key, signature), user-data and public keys (their sizes only).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

_SIZE_ONLY = {"user-data", "public-key"}


def scrub(body: Any) -> Any:
    if not isinstance(body, dict):
        return body
    return {k: f"<{len(str(v))} chars>" if k in _SIZE_ONLY else v for k, v in body.items()}


class RequestLog:
    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None
        if path is not None:
            # 0600: what an account asked for is its own business.
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def write(self, entry: dict[str, Any], started: float) -> None:
        if self._fd is None:
            return
        line = {
            "ts": round(time.time(), 3),
            "duration_ms": round((time.monotonic() - started) * 1000, 2),
            **entry,
        }
        if "body" in line:
            line["body"] = scrub(line["body"])
        data = (json.dumps(line, sort_keys=True) + "\n").encode()
        with self._lock:
            os.write(self._fd, data)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def read(path: Path) -> list[dict[str, Any]]:
    """The log's entries (for tests and tools)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
