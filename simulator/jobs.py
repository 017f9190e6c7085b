"""Async jobs whose outcome is decided by timestamps, not by a background thread.

A job's start is the later of its creation and the finish of the last job on the same
instance (jobs on one VM run one after another); it finishes `latency` seconds later.
Any request first applies, in finish order, every job whose time has come ("settle"), so
several processes sharing one state file see the same outcome at the same moment.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from stackfleet.simulator import catalog as cat
from stackfleet.simulator.errors import ApiError
from stackfleet.simulator.state import Doc, Tx

# An effect applies a finished job to the state and returns its jobresult, or raises
# ApiError to fail the job with that code.
Effect = Callable[[Tx, Doc, float], dict[str, Any]]

JOB_FAULT_TEXT = "Job failed due to exception: simulated fault (jobfail)"


def stamp(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def create(
    tx: Tx,
    cmd: str,
    instance_type: str | None,
    instance_id: str | None,
    params: dict[str, Any],
    latency: float,
    fail: bool = False,
    now: float | None = None,
) -> str:
    now = time.time() if now is None else now
    start = now
    if instance_id is not None:
        row = tx.conn.execute(
            "SELECT MAX(finish_at) FROM jobs WHERE instance_id=?", (instance_id,)
        ).fetchone()
        if row[0] is not None:
            start = max(start, float(row[0]))
    job_id = str(uuid.uuid4())
    doc = {
        "id": job_id,
        "cmd": cmd,
        "instancetype": instance_type,
        "instanceid": instance_id,
        "params": params,
        "fail": fail,
        "created": stamp(now),
    }
    tx.conn.execute(
        "INSERT INTO jobs (id, instance_id, created, start_at, finish_at, doc) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (job_id, instance_id, now, start, start + latency, json.dumps(doc)),
    )
    return job_id


def settle(
    tx: Tx, effects: dict[str, Effect], now: float, failed: Callable[[Tx, Doc], None]
) -> None:
    rows = tx.conn.execute(
        "SELECT seq, finish_at, doc FROM jobs WHERE applied=0 AND finish_at<=? "
        "ORDER BY finish_at, seq",
        (now,),
    ).fetchall()
    for seq, finish_at, raw in rows:
        job = json.loads(raw)
        try:
            if job["fail"]:
                raise ApiError(530, JOB_FAULT_TEXT)
            result = effects[job["cmd"]](tx, job, float(finish_at))
            job.update(status=1, resultcode=0, result=result)
        except ApiError as err:
            failed(tx, job)
            job.update(status=2, resultcode=err.code, result=err.job_result())
        job["completed"] = stamp(float(finish_at))
        tx.conn.execute("UPDATE jobs SET applied=1, doc=? WHERE seq=?", (json.dumps(job), seq))


def get(tx: Tx, job_id: str) -> Doc | None:
    row = tx.conn.execute("SELECT doc FROM jobs WHERE id=?", (job_id,)).fetchone()
    return json.loads(row[0]) if row else None


def pending(tx: Tx) -> list[Doc]:
    rows = tx.conn.execute("SELECT doc FROM jobs WHERE applied=0 ORDER BY seq")
    return [json.loads(r[0]) for r in rows]


def running_on(tx: Tx, instance_id: str, now: float) -> Doc | None:
    """The job working on an instance right now (started, not finished), if any."""
    row = tx.conn.execute(
        "SELECT doc FROM jobs WHERE instance_id=? AND applied=0 AND start_at<=? "
        "ORDER BY finish_at LIMIT 1",
        (instance_id, now),
    ).fetchone()
    return json.loads(row[0]) if row else None


def render(job: Doc) -> dict[str, Any]:
    out: dict[str, Any] = {
        "accountid": cat.ACCOUNT_ID,
        "userid": cat.USER_ID,
        "cmd": _java_class(job["cmd"]),
        "jobstatus": job.get("status", 0),
        "jobprocstatus": 0,
        "jobresultcode": job.get("resultcode", 0),
    }
    if "status" in job:
        out["jobresulttype"] = "object"
        out["jobresult"] = job["result"]
    if job.get("instancetype"):
        out["jobinstancetype"] = job["instancetype"]
        out["jobinstanceid"] = job["instanceid"]
    out["created"] = job["created"]
    if "completed" in job:
        out["completed"] = job["completed"]
    out["jobid"] = job["id"]
    return out


_PACKAGES = {
    "VirtualMachine": "vm",
    "Tags": "tag",
    "SecurityGroupIngress": "securitygroup",
    "AffinityGroup": "affinitygroup",
}


def _java_class(cmd: str) -> str:
    # e.g. org.apache.cloudstack.api.command.user.vm.DeployVMCmd, as CloudStack names them.
    short = cmd[0].upper() + cmd[1:]
    package = next((p for suffix, p in _PACKAGES.items() if short.endswith(suffix)), "vm")
    short = short.replace("VirtualMachine", "VM")
    return f"org.apache.cloudstack.api.command.user.{package}.{short}Cmd"
