"""The exoscale simulator's JSONL request log: one line per request, with what the OpenAPI
schemas said of its body and of the answer.

`request_schema` / `response_schema`: "ok", a list of problems, or null when the operation has no
body / the answer is an error (the spec documents no error bodies). Never logged: the
Authorization header (key, signature), user-data and public keys (their sizes only).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stackfleet.simulator.serving import JsonLines

_SIZE_ONLY = {"user-data", "public-key"}


def scrub(body: Any) -> Any:
    if not isinstance(body, dict):
        return body
    return {k: f"<{len(str(v))} chars>" if k in _SIZE_ONLY else v for k, v in body.items()}


class RequestLog(JsonLines):
    def write(self, entry: dict[str, Any], started: float) -> None:
        if "body" in entry:
            entry = {**entry, "body": scrub(entry["body"])}
        self.append(entry, started)


def read(path: Path) -> list[dict[str, Any]]:
    """The log's entries (for tests and tools)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
