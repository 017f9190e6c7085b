"""exoscale's asynchronous operations, polled in batches.

Every mutating call of API v2 answers an operation (`pending`, then `success`, `failure` or
`timeout`) whose `reference` names the resource. The API has no call that lists several
operations, so one polling round asks get-operation for every pending id at once, on a small
pool of threads: N operations cost one round trip of wall time per round, not N. The engine's
pipeline (provisioners/operations.py) decides when to poll; this class answers which ids
are still pending and remembers why a finished one failed.

An operation can also be registered with the effect it must have (`expect`): a rule listed in
its group, a label on its instance, a deleted group no longer listed. Each round then reads
one listing per kind of resource for all such operations together, and an operation whose
effect shows is finished without asking for it: the cloud is the truth, and one listing
answers for many operations. Instance operations are waited for as operations (exoscale may
refuse a change to an instance whose operation is still running).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from stackfleet.errors import CloudError, JobFailed
from stackfleet.provisioners.base import Progress
from stackfleet.provisioners.exoscale.client import ExoscaleAPI
from stackfleet.provisioners.operations import OperationRunner, Submission, is_already_done

POLL_THREADS = 8
# An operation with an expected effect is also asked about once in this many rounds.
EFFECT_ASK_EVERY = 4
# Resource kind -> (list operation of the official client, answer key, item key).
LISTINGS = {
    "instance": ("list_instances", "instances", "id"),
    "security-group": ("list_security_groups", "security-groups", "id"),
    "anti-affinity-group": ("list_anti_affinity_groups", "anti-affinity-groups", "id"),
    "ssh-key": ("list_ssh_keys", "ssh-keys", "name"),
    "private-network": ("list_private_networks", "private-networks", "id"),
}
# A listing of one kind: item key -> item.
Listing = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Effect:
    kind: str  # a key of LISTINGS
    shows: Callable[[Listing], bool]


class ExoscaleOperations(OperationRunner):
    # A round here costs a listing per kind and, every few rounds, a get-operation per
    # pending operation: polling faster as operations age would multiply those calls.
    poll_age_fraction = None

    def __init__(
        self,
        api: ExoscaleAPI,
        concurrency: int = 8,
        on_progress: Progress | None = None,
        **pacing: Any,
    ) -> None:
        super().__init__(concurrency=concurrency, on_progress=on_progress, **pacing)
        self.api = api
        self._poll_pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        # Finished operations: id -> the operation as last read (state, reason, reference).
        self.results: dict[str, dict[str, Any]] = {}
        # Operations started but not waited for (security-group rules): settle() waits.
        self.background: dict[str, str] = {}
        self._effects: dict[str, Effect] = {}
        self._rounds = 0

    def expect(self, op_id: str, kind: str, shows: Callable[[Listing], bool]) -> None:
        """`op_id` is done once `shows` is true of a fresh listing of `kind`."""
        with self._lock:
            self._effects[op_id] = Effect(kind, shows)

    def listing(self, kind: str) -> Listing:
        method, key, item_key = LISTINGS[kind]
        return {str(i[item_key]): i for i in self.api.call(method).get(key, [])}

    def _pending(self, op_ids: set[str]) -> set[str]:
        self._rounds += 1
        with self._lock:
            effects = {i: self._effects[i] for i in op_ids if i in self._effects}
        shown: set[str] = set()
        for kind in sorted({e.kind for e in effects.values()}):
            now = self.listing(kind)
            shown |= {i for i, e in effects.items() if e.kind == kind and e.shows(now)}
        with self._lock:
            for op_id in shown:
                self.results[op_id] = {"id": op_id, "state": "success"}
                self._effects.pop(op_id, None)
        # Those whose effect has not shown yet are asked about every few rounds only: to
        # learn of a failure (whose effect never shows), not to learn of their success.
        unseen = set(effects) - shown
        asked = op_ids - shown - (set() if self._rounds % EFFECT_ASK_EVERY == 0 else unseen)
        return self._ask(asked) | (unseen - asked)

    def _ask(self, op_ids: set[str]) -> set[str]:
        """One round of get-operation for every id, sent together."""
        ids = sorted(op_ids)
        if not ids:
            return set()
        if self._poll_pool is None:
            self._poll_pool = ThreadPoolExecutor(POLL_THREADS, thread_name_prefix="exo-poll")

        def read(op_id: str) -> dict[str, Any]:
            return self.api.call("get_operation", id=op_id)

        answers = list(self._poll_pool.map(read, ids)) if len(ids) > 1 else [read(i) for i in ids]
        pending = set()
        with self._lock:
            for op_id, op in zip(ids, answers, strict=True):
                if op.get("state") == "pending":
                    pending.add(op_id)
                else:
                    self.results[op_id] = op
                    self._effects.pop(op_id, None)
        return pending

    def failure(self, op_id: str | None) -> str | None:
        """Why a finished operation failed, or None if it succeeded (or was not ours)."""
        if op_id is None:
            return "never started"
        if is_already_done(op_id):
            return None
        op = self.results.get(op_id)
        if op is None:
            op = self.api.call("get_operation", id=op_id)
        if op.get("state") in ("success", "pending"):
            return None
        reason = op.get("message") or op.get("reason") or "no reason given"
        return f"{op.get('state')}: {reason}"

    def wait(self, op_ids: dict[str, str], timeout_s: float, what: str) -> None:
        """Wait for operations (key -> id) together; raise the first failure."""
        done = self.run([submitted(k, i) for k, i in op_ids.items()], timeout_s, what)
        for key, op_id in sorted(done.items()):
            why = self.failure(op_id)
            if why is not None:
                raise JobFailed(f"exoscale: {key}: {why}")

    def close(self) -> None:
        for pool in (self._poll_pool, self._pool):
            if pool is not None:
                pool.shutdown(wait=False)


def submitted(key: str, op_id: str) -> Submission:
    """An operation already started, for OperationRunner.run to wait on."""

    def started() -> str:
        return op_id

    return Submission(key, started)


def reference_id(op: dict[str, Any], what: str) -> str:
    """The id of the resource an operation made."""
    found = (op.get("reference") or {}).get("id")
    if not found:
        raise CloudError(f"exoscale: the operation creating {what} names no resource")
    return str(found)
