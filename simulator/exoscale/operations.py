"""Asynchronous operations, decided by timestamps rather than a background thread.

A mutating call returns an operation in state "pending" that references its resource; it turns
"success" `latency` seconds later (after the resource's previous operation, if one is still
running). Its effect, if any (an instance reaching "running", a deleted instance going away), is
applied by `settle`, which every request runs first: several processes sharing one state file
see the same outcome at the same moment.
"""

from __future__ import annotations

import uuid
from typing import Any

from stackfleet.simulator.state import Doc, Tx

OPERATION = "operation"
PENDING = "pending-operation"


def start(
    tx: Tx,
    now: float,
    latency: float,
    command: str,
    link: str,
    resource_id: str | None = None,
    effect: dict[str, Any] | None = None,
) -> Doc:
    """Record a pending operation on a resource and return its answer."""
    busy_key = f"busy:{link}"
    start_at = max(now, float(tx.meta(busy_key) or 0))
    finish_at = start_at + latency
    tx.set_meta(busy_key, repr(finish_at))
    reference: dict[str, Any] = {"link": f"/v2{link}", "command": command}
    if resource_id is not None:
        reference["id"] = resource_id
    op = {"id": str(uuid.uuid4()), "state": "pending", "reference": reference}
    tx.put(OPERATION, op)
    tx.put(PENDING, {"id": op["id"], "finish_at": finish_at, "effect": effect})
    return view(op)


def settle(tx: Tx, now: float) -> None:
    """Finish, in order, every operation whose time has come."""
    due = [p for p in tx.all(PENDING) if p["finish_at"] <= now]
    for pending in sorted(due, key=lambda p: p["finish_at"]):
        effect = pending.get("effect")
        if effect:
            _apply(tx, effect)
        op = tx.get(OPERATION, pending["id"])
        if op is not None:
            op["state"] = "success"
            tx.put(OPERATION, op)
        tx.delete(PENDING, pending["id"])


def _apply(tx: Tx, effect: dict[str, Any]) -> None:
    doc = tx.get(effect["kind"], effect["id"])
    if doc is None:
        return
    if effect.get("remove"):
        tx.delete(effect["kind"], effect["id"])
    elif "state" in effect:
        doc["state"] = effect["state"]
        tx.put(effect["kind"], doc)


def get(tx: Tx, op_id: str) -> Doc | None:
    op = tx.get(OPERATION, op_id)
    return view(op) if op is not None else None


def view(op: Doc) -> Doc:
    return {k: op[k] for k in ("id", "state", "reference", "reason", "message") if k in op}
