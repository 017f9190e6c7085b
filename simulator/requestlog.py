"""The JSONL request log: command, parameters without secrets, status, duration."""

from __future__ import annotations

from typing import Any

from stackfleet.simulator.serving import JsonLines

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


class RequestLog(JsonLines):
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
        entry: dict[str, Any] = {
            "method": method,
            "command": command,
            "params": scrub(params),
            "status": status,
            "client": client,
        }
        if note:
            entry["note"] = note
        self.append(entry, started)
