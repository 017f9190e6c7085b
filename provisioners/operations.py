"""Many slow cloud operations in flight at once, waited on together: the engine's pipeline.

A provider starts an operation with one call that returns an id, and says which of a
set of ids are still pending in one poll (`OperationRunner._pending`); everything else
is here, the same for every cloud:

- `Pipeline`: tasks in lanes (each lane has its own concurrency), tasks that wait for
  another operation (a gate), and a callback per round with the tasks that finished,
  which may add more tasks (deploy -> write userdata -> start, per VM).
- The poll interval starts small, backs off to at most `max_interval_s` (and to at most a
  tenth of the oldest pending operation's age), and drops back as soon as a round sees
  operations finish while others remain (operations of one batch tend to finish
  together). Every wait has a deadline and says what it was waiting for.
- Progress is told in machines, never in tasks (a VM's deploy and start are two tasks,
  one machine): a pipeline that moves machines is given a `MachineCount`; one that does
  not (tags, rules) reports no count, and the display says what it waits for instead.

An operation id that starts with `DONE_PREFIX` stands for one that needed no waiting
(the resource was found already there, or already gone).
"""

from __future__ import annotations

import abc
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, TypeVar

from stackfleet.errors import WaitTimeout
from stackfleet.provisioners.base import Progress

T = TypeVar("T")
# How many requests are sent at once when several operations are ready to start.
SUBMIT_THREADS = 8
# The poll interval stays under this share of the oldest pending operation's age, so a
# finish is seen at most ~10% late however long the operations take (1 s at most, the
# runner's max_interval_s), at a few requests a second.
POLL_AGE_FRACTION = 0.1
# "adopted:<id>": an operation that is already over (nothing to poll).
DONE_PREFIX = "adopted:"


def already_done(resource_id: str) -> str:
    return f"{DONE_PREFIX}{resource_id}"


def is_already_done(op_id: str | None) -> bool:
    return op_id is not None and op_id.startswith(DONE_PREFIX)


@dataclass(frozen=True)
class Submission:
    key: str  # what the operation is about, e.g. a machine name
    submit: Callable[[], str]  # starts it, returns its id


@dataclass(frozen=True)
class MachineCount:
    """How far a pipeline is, in machines: `done` counts them from the pipeline."""

    what: str  # what is waited for, e.g. "9 machines to start"
    total: int
    done: Callable[[Pipeline], int]

    @classmethod
    def of_keys(cls, what: str, keys: Collection[str]) -> MachineCount | None:
        """Counts the finished tasks whose key is one of `keys` (a machine each); none to
        count, no count."""
        if not keys:
            return None
        return cls(what, len(keys), lambda p: sum(1 for t in p.done if t.key in keys))


@dataclass
class Task:
    key: str
    submit: Callable[[], str]
    lane: str = "default"
    # Operation ids that must have finished before this task is submitted.
    after: tuple[str, ...] = ()
    data: Any = None
    op_id: str | None = field(default=None, init=False)


class OperationRunner(abc.ABC):
    """Submits operations (bounded) and polls them together; one per provider instance."""

    # The poll interval's cap as a share of the oldest pending operation's age (None: only
    # max_interval_s). For clouds whose round is one request whatever is pending.
    poll_age_fraction: float | None = POLL_AGE_FRACTION

    def __init__(
        self,
        concurrency: int = 8,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        first_interval_s: float = 0.05,
        max_interval_s: float = 1.0,
        on_progress: Progress | None = None,
    ) -> None:
        self.concurrency = concurrency
        self._clock = clock
        self._sleep = sleep
        self._first = first_interval_s
        self._max = max_interval_s
        self._on_progress = on_progress
        # Every operation id seen finished (so gates on them open without another poll).
        self.finished: set[str] = set()
        self._pool: ThreadPoolExecutor | None = None

    @abc.abstractmethod
    def _pending(self, op_ids: set[str]) -> set[str]:
        """One round of asking the cloud: which of `op_ids` have not finished yet."""

    def poll(self, op_ids: set[str]) -> set[str]:
        """One round: which of `op_ids` are still pending (the rest count as finished)."""
        ours = {j for j in op_ids if not is_already_done(j)}
        pending = self._pending(ours) if ours else set()
        self.finished |= op_ids - pending
        return pending

    def run(
        self,
        submissions: Iterable[Submission],
        timeout_s: float,
        what: str,
        machines: bool = False,
    ) -> dict[str, str]:
        """Submit all (bounded), wait until each has finished; key -> operation id.

        Finished is not succeeded: callers check the resources (one list call for all)
        and ask only the operations whose resource looks wrong why.
        `machines`: one submission per machine, so progress counts the finished ones.
        """
        tasks = [Task(s.key, s.submit) for s in submissions]
        count = MachineCount(what, len(tasks), lambda p: len(p.done)) if machines else None
        pipe = self.pipeline(timeout_s, what, count=count)
        for task in tasks:
            pipe.add(task)
        return {t.key: t.op_id for t in pipe.run() if t.op_id is not None}

    def pipeline(
        self,
        timeout_s: float,
        what: str,
        on_round: Callable[[Pipeline, list[Task]], None] | None = None,
        limits: Mapping[str, int] | None = None,
        count: MachineCount | None = None,
    ) -> Pipeline:
        return Pipeline(self, timeout_s, what, on_round, dict(limits or {}), count)

    def submit_all(self, tasks: Sequence[Task]) -> None:
        for task, op_id in zip(tasks, self.concurrently([t.submit for t in tasks]), strict=True):
            task.op_id = op_id

    def concurrently(self, calls: Sequence[Callable[[], T]]) -> list[T]:
        """Make these (independent) calls at once, at most SUBMIT_THREADS at a time; their
        results in order. The first exception is raised once all have ended."""
        if len(calls) <= 1:
            return [call() for call in calls]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(SUBMIT_THREADS, thread_name_prefix="stackfleet-api")
        return all_ended(self._pool, calls)

    def report(self, what: str, done: int, total: int) -> None:
        if self._on_progress is not None:
            self._on_progress(what, done, total)


def all_ended(pool: Executor, calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run `calls` on `pool`; their results in order. The first exception is raised only
    once every call has ended: no request outlives the step that made it."""
    futures = [pool.submit(call) for call in calls]
    wait(futures)
    return [f.result() for f in futures]


class Pipeline:
    """Tasks submitted in order per lane (bounded), polled together, finished per round."""

    def __init__(
        self,
        runner: OperationRunner,
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
        self.inflight: dict[str, Task] = {}  # operation id -> task
        self.since: dict[str, float] = {}  # operation id -> when it was submitted
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
        if self.count is not None:
            self.runner.report(self.count.what, self.count.done(self), self.count.total)

    def run(self) -> list[Task]:
        runner = self.runner
        deadline = runner._clock() + self.timeout_s
        interval = runner._first
        self._report()  # 0 of N: the display knows what is waited for before the first one
        while True:
            ready = self._ready()
            if ready:
                runner.submit_all(ready)
                submitted = runner._clock()
                for task in ready:
                    assert task.op_id is not None
                    self.inflight[task.op_id] = task
                    self.since[task.op_id] = submitted
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
            for task in finished:
                self.since.pop(task.op_id or "", None)
            opened = bool(gates - pending)
            if finished or opened:
                self.done.extend(finished)
                if self.on_round and finished:
                    self.on_round(self, finished)
                interval = runner._first * 2
            else:
                interval = min(interval * 1.6, runner._max, self._age_cap(runner._clock()))
            self._report()

    def _age_cap(self, now: float) -> float:
        """The longest sensible wait before the next poll: a share of how long the oldest
        pending operation has been running (with none, the runner's maximum)."""
        fraction = self.runner.poll_age_fraction
        if not self.inflight or fraction is None:
            return self.runner._max
        oldest = min(self.since.get(j, now) for j in self.inflight)
        return max(self.runner._first * 2, fraction * (now - oldest))
