"""Run many CloudStack async jobs at once and wait for them cheaply.

One `listAsyncJobs` per polling round tells which of our jobs are still pending (a
finished job drops out of it); no per-job query unless the caller asks for a result.
At most `concurrency` jobs are in flight; finished ones make room for the next. Every
wait has a deadline and says what it was waiting for when it runs out.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from stackfleet.errors import CloudError, JobFailed, WaitTimeout
from stackfleet.provisioners.cloudstack.connection import CloudStackAPI

log = logging.getLogger("stackfleet.cloudstack.jobs")

Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass(frozen=True)
class Submission:
    key: str  # what the job is about, e.g. a machine name
    submit: Callable[[], str]  # sends the command, returns its jobid


class JobRunner:
    def __init__(
        self,
        api: CloudStackAPI,
        concurrency: int = 8,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        first_interval_s: float = 0.2,
        max_interval_s: float = 1.0,
        on_progress: Progress | None = None,
    ) -> None:
        self.api = api
        self.concurrency = concurrency
        self._clock = clock
        self._sleep = sleep
        self._first = first_interval_s
        self._max = max_interval_s
        self._on_progress = on_progress
        self._list_jobs_works = True

    def run(self, submissions: Iterable[Submission], timeout_s: float, what: str) -> dict[str, str]:
        """Submit all (bounded), wait until each job has finished; key -> jobid.

        Finished is not succeeded: callers check the resources (one list call for
        all) and ask `result()` only for the jobs whose resource looks wrong.
        """
        queue = deque(submissions)
        total = len(queue)
        inflight: dict[str, str] = {}  # jobid -> key
        finished: dict[str, str] = {}
        deadline = self._clock() + timeout_s
        interval = self._first
        while queue or inflight:
            while queue and len(inflight) < self.concurrency:
                item = queue.popleft()
                inflight[item.submit()] = item.key
            if self._clock() > deadline:
                names = ", ".join(sorted(inflight.values())[:5])
                raise WaitTimeout(
                    f"gave up after {timeout_s:.0f} s waiting for {what}: "
                    f"{len(inflight) + len(queue)} of {total} not finished ({names})"
                )
            self._sleep(interval)
            interval = min(interval * 1.5, self._max)
            pending = self._pending(inflight)
            for jobid in [j for j in inflight if j not in pending]:
                finished[inflight.pop(jobid)] = jobid
                interval = self._first if queue else interval
            if self._on_progress:
                self._on_progress(what, len(finished), total)
        return finished

    def wait_one(self, jobid: str, timeout_s: float, what: str) -> dict[str, Any]:
        """Wait for one job and return its result (raises JobFailed)."""
        self.run([Submission(what, lambda: jobid)], timeout_s, what)
        return self.result(jobid)

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

    def _pending(self, inflight: Mapping[str, str]) -> set[str]:
        if self._list_jobs_works:
            try:
                jobs = self.api.list_all("listAsyncJobs", "asyncjobs")
                return {j["jobid"] for j in jobs if int(j.get("jobstatus", 0)) == 0} & set(inflight)
            except CloudError as exc:
                if exc.code not in (401, 432):
                    raise
                log.debug("listAsyncJobs refused (%s): polling each job", exc.code)
                self._list_jobs_works = False
        pending = set()
        for jobid in inflight:
            body = self.api.call("queryAsyncJobResult", {"jobid": jobid})
            if int(body.get("jobstatus", 0)) == 0:
                pending.add(jobid)
        return pending
