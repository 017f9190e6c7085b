"""CloudStack's async jobs as the engine's operations: one `listAsyncJobs` per round.

One `listAsyncJobs` per polling round tells which of our jobs are still pending (a
finished job drops out of it); no per-job query unless the caller asks for a result
(`queryAsyncJobResult`). Pipelines, bounded submission, back-off and progress are the
engine's (provisioners/operations.py).
Background jobs (tags, rules) are fired without waiting; they ride along in every
polling round, and `drain()` waits for the rest in shared rounds and reports a failed
one with the job's error text.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from stackfleet.errors import CloudError, JobFailed
from stackfleet.provisioners.base import Progress
from stackfleet.provisioners.cloudstack.connection import CloudStackAPI
from stackfleet.provisioners.operations import OperationRunner, Submission

log = logging.getLogger("stackfleet.cloudstack.jobs")


class JobRunner(OperationRunner):
    def __init__(
        self,
        api: CloudStackAPI,
        concurrency: int = 8,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        first_interval_s: float = 0.05,
        max_interval_s: float = 1.0,
        on_progress: Progress | None = None,
    ) -> None:
        super().__init__(concurrency, clock, sleep, first_interval_s, max_interval_s, on_progress)
        self.api = api
        self._list_jobs_works = True
        # Background jobs: jobid -> what; and those seen finished, not yet checked.
        self._background: dict[str, str] = {}
        self._finished_background: dict[str, str] = {}
        # (jobs, callback): run once all those jobs have finished, from a polling round.
        self._after: list[tuple[frozenset[str], Callable[[], None]]] = []
        self._unchecked: set[str] = set()

    def result(self, jobid: str) -> dict[str, Any]:
        body = self.api.call("queryAsyncJobResult", {"jobid": jobid})
        status = int(body.get("jobstatus", 0))
        if status == 2:
            res = body.get("jobresult") or {}
            code = res.get("errorcode")
            raise JobFailed(
                f"{body.get('cmd', 'job').rsplit('.', 1)[-1]} failed: "
                f"{res.get('errortext', 'no reason given')} ({code})",
                code=int(code) if code is not None else None,
            )
        result: dict[str, Any] = body.get("jobresult") or {}
        return result

    # --- background jobs ------------------------------------------------------------
    def background(self, jobid: str, what: str, check: bool = True) -> None:
        """A job nothing waits for now; `drain()` waits for it and, with `check`, asks its
        outcome (without: its effect is verified otherwise, e.g. by listing)."""
        self._background[jobid] = what
        if not check:
            self._unchecked.add(jobid)

    def when_done(self, jobids: Iterable[str], callback: Callable[[], None]) -> None:
        """Run `callback` in the first polling round that sees all `jobids` finished.

        The jobs must be background jobs (or otherwise polled): a callback may fire more
        of them, and `drain()` keeps going until none is left.
        """
        self._after.append((frozenset(jobids), callback))
        self._run_ready_callbacks()

    def _run_ready_callbacks(self) -> None:
        ready = [(jobs, cb) for jobs, cb in self._after if jobs <= self.finished]
        if not ready:
            return
        self._after = [(jobs, cb) for jobs, cb in self._after if not jobs <= self.finished]
        for _, callback in ready:
            callback()

    def drain(self, timeout_s: float) -> None:
        """Wait for every background job (shared rounds), then check each one's outcome."""
        while self._background:
            pending = dict(self._background)
            self.run(
                [Submission(w, _submitted(j)) for j, w in pending.items()],
                timeout_s,
                f"{len(pending)} background job(s)",
            )
            self._run_ready_callbacks()  # they may fire more background jobs
        checks, self._finished_background = self._finished_background, {}
        for jobid, what in checks.items():
            try:
                self.result(jobid)
            except JobFailed as exc:
                raise CloudError(f"{what}: {exc}", code=exc.code) from None

    # --- polling ------------------------------------------------------------------
    def poll(self, jobids: set[str]) -> set[str]:
        """One round: which of `jobids` (and of the background jobs) are still pending."""
        watch = jobids | set(self._background)
        pending = super().poll(watch)
        for jobid in watch - pending:
            what = self._background.pop(jobid, None)
            if what is not None and jobid not in self._unchecked:
                self._finished_background[jobid] = what
        self._run_ready_callbacks()
        return pending & jobids

    def _pending(self, ours: set[str]) -> set[str]:
        if self._list_jobs_works:
            try:
                jobs = self.api.list_all("listAsyncJobs", "asyncjobs")
                return {j["jobid"] for j in jobs if int(j.get("jobstatus", 0)) == 0} & ours
            except CloudError as exc:
                if exc.code not in (401, 432):
                    raise
                log.debug("listAsyncJobs refused (%s): polling each job", exc.code)
                self._list_jobs_works = False
        pending = set()
        for jobid in ours:
            body = self.api.call("queryAsyncJobResult", {"jobid": jobid})
            if int(body.get("jobstatus", 0)) == 0:
                pending.add(jobid)
        return pending


def _submitted(jobid: str) -> Callable[[], str]:
    """A 'submit' for a job already sent: waiting for it is all that is left."""
    return lambda: jobid
