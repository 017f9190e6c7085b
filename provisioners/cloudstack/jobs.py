"""Run many CloudStack async jobs at once and wait for them cheaply.

One `listAsyncJobs` per polling round tells which of our jobs are still pending (a
finished job drops out of it); no per-job query unless the caller asks for a result.
The interval starts small, backs off to at most `max_interval_s`, and drops back to
small as soon as a round sees jobs finish while others remain (jobs of one batch tend
to finish together). Every wait has a deadline and says what it was waiting for.

`Pipeline` is the general form: tasks in lanes (each lane has its own concurrency),
tasks that wait for another job (a gate), and a callback per round with the tasks that
finished, which may add more tasks (deploy -> write userdata -> start, per VM).
Progress is told in machines, never in tasks (a VM's deploy and start are two tasks, one
machine): a pipeline that moves machines is given a `MachineCount`; one that does not
(tags, rules) reports no count, and the display says what it waits for instead.
Background jobs (tags) are fired without waiting; `drain()` waits for all of them in
shared rounds and reports a failed one with the job's error text.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from stackfleet.errors import CloudError, JobFailed, WaitTimeout
from stackfleet.provisioners.cloudstack.connection import CloudStackAPI

log = logging.getLogger("stackfleet.cloudstack.jobs")

Progress = Callable[[str, int, int], None]  # (what, machines done, machines in all)
# How many requests are sent at once when several jobs are ready to submit.
SUBMIT_THREADS = 8


@dataclass(frozen=True)
class Submission:
    key: str  # what the job is about, e.g. a machine name
    submit: Callable[[], str]  # sends the command, returns its jobid


@dataclass(frozen=True)
class MachineCount:
    """How far a pipeline is, in machines: `done` counts them from the pipeline."""

    what: str  # what is waited for, e.g. "9 machines to start"
    total: int
    done: Callable[[Pipeline], int]


@dataclass
class Task:
    key: str
    submit: Callable[[], str]
    lane: str = "default"
    # Job ids that must have finished before this task is submitted.
    after: tuple[str, ...] = ()
    data: Any = None
    jobid: str | None = field(default=None, init=False)


class JobRunner:
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
        self.api = api
        self.concurrency = concurrency
        self._clock = clock
        self._sleep = sleep
        self._first = first_interval_s
        self._max = max_interval_s
        self._on_progress = on_progress
        self._list_jobs_works = True
        # Background jobs: jobid -> what; and those seen finished, not yet checked.
        self._background: dict[str, str] = {}
        self._finished_background: dict[str, str] = {}
        # Every job id seen finished (so gates on them open without another poll).
        self.finished: set[str] = set()
        # (jobs, callback): run once all those jobs have finished, from a polling round.
        self._after: list[tuple[frozenset[str], Callable[[], None]]] = []
        self._unchecked: set[str] = set()
        self._pool: ThreadPoolExecutor | None = None

    # --- simple batches -----------------------------------------------------------
    def run(
        self,
        submissions: Iterable[Submission],
        timeout_s: float,
        what: str,
        machines: bool = False,
    ) -> dict[str, str]:
        """Submit all (bounded), wait until each job has finished; key -> jobid.

        Finished is not succeeded: callers check the resources (one list call for
        all) and ask `result()` only for the jobs whose resource looks wrong.
        `machines`: one submission per machine, so progress counts the finished jobs.
        """
        tasks = [Task(s.key, s.submit) for s in submissions]
        count = MachineCount(what, len(tasks), lambda p: len(p.done)) if machines else None
        pipe = self.pipeline(timeout_s, what, count=count)
        for task in tasks:
            pipe.add(task)
        return {t.key: t.jobid for t in pipe.run() if t.jobid is not None}

    def pipeline(
        self,
        timeout_s: float,
        what: str,
        on_round: Callable[[Pipeline, list[Task]], None] | None = None,
        limits: Mapping[str, int] | None = None,
        count: MachineCount | None = None,
    ) -> Pipeline:
        return Pipeline(self, timeout_s, what, on_round, dict(limits or {}), count)

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
    def submit_all(self, tasks: Sequence[Task]) -> None:
        if len(tasks) == 1:
            tasks[0].jobid = tasks[0].submit()
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(SUBMIT_THREADS, thread_name_prefix="stackfleet-api")
        for task, jobid in zip(tasks, self._pool.map(lambda t: t.submit(), tasks), strict=True):
            task.jobid = jobid

    def poll(self, jobids: set[str]) -> set[str]:
        """One round: which of `jobids` (and of the background jobs) are still pending."""
        watch = jobids | set(self._background)
        pending = self._pending(watch)
        for jobid in watch - pending:
            self.finished.add(jobid)
            what = self._background.pop(jobid, None)
            if what is not None and jobid not in self._unchecked:
                self._finished_background[jobid] = what
        self._run_ready_callbacks()
        return pending & jobids

    def _pending(self, jobids: set[str]) -> set[str]:
        ours = {j for j in jobids if not j.startswith("adopted:")}
        if not ours:
            return set()
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


class Pipeline:
    """Tasks submitted in order per lane (bounded), polled together, finished per round."""

    def __init__(
        self,
        runner: JobRunner,
        timeout_s: float,
        what: str,
        on_round: Callable[[Pipeline, list[Task]], None] | None,
        limits: dict[str, int],
        count: MachineCount | None = None,
    ) -> None:
        self.runner = runner
        self.timeout_s = timeout_s
        self.what = what
        self.on_round = on_round
        self.limits = limits
        self.count = count
        self.queues: dict[str, deque[Task]] = {}
        self.inflight: dict[str, Task] = {}  # jobid -> task
        self.done: list[Task] = []
        self.total = 0

    def add(self, task: Task) -> None:
        self.queues.setdefault(task.lane, deque()).append(task)
        self.total += 1

    def _ready(self) -> list[Task]:
        ready = []
        for lane, queue in self.queues.items():
            limit = self.limits.get(lane, self.runner.concurrency)
            busy = sum(1 for t in self.inflight.values() if t.lane == lane)
            # In order: a task waiting for its gate holds back those behind it, so
            # the first tasks (etcd, control) keep their place in the first wave.
            while queue and busy < limit and all(g in self.runner.finished for g in queue[0].after):
                ready.append(queue.popleft())
                busy += 1
        return ready

    def _report(self) -> None:
        if self.count is not None and self.runner._on_progress is not None:
            self.runner._on_progress(self.count.what, self.count.done(self), self.count.total)

    def run(self) -> list[Task]:
        runner = self.runner
        deadline = runner._clock() + self.timeout_s
        interval = runner._first
        self._report()  # 0 of N: the display knows what is waited for before the first one
        while True:
            ready = self._ready()
            if ready:
                runner.submit_all(ready)
                for task in ready:
                    assert task.jobid is not None
                    self.inflight[task.jobid] = task
            waiting = any(self.queues.values())
            if not self.inflight and not waiting:
                return self.done
            gates = {g for q in self.queues.values() for t in q for g in t.after}
            gates -= runner.finished
            if not self.inflight and not gates and waiting:
                continue
            now = runner._clock()
            if now > deadline:
                names = ", ".join(sorted(t.key for t in self.inflight.values())[:5])
                raise WaitTimeout(
                    f"gave up after {self.timeout_s:.0f} s waiting for {self.what}: "
                    f"{len(self.inflight) + sum(map(len, self.queues.values()))} of "
                    f"{self.total} not finished ({names})"
                )
            runner._sleep(min(interval, max(deadline - now, 0.0) + 0.01))
            pending = runner.poll(set(self.inflight) | gates)
            finished = [self.inflight.pop(j) for j in list(self.inflight) if j not in pending]
            opened = bool(gates - pending)
            if finished or opened:
                self.done.extend(finished)
                if self.on_round and finished:
                    self.on_round(self, finished)
                interval = runner._first * 2
            else:
                interval = min(interval * 1.6, runner._max)
            self._report()
