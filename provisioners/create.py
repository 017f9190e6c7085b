"""Creating machines as one pipeline: deploy, then (when the engine says so) write the
final userdata, mark it written, and start, per machine, while others are still deploying.

The order is what makes a kill at any point safe, and it is the same on every cloud, so
it lives here and providers give only primitives (Provisioner.begin_deploy, begin_start,
set_userdata, tag_machines, ...):
- names first: a machine is found again by name after a kill before its tags;
- tags right after the deploy (a kill in between: the next plan re-tags it);
- `written_tags` (the bootstrap marker) only after the final userdata is written, and
  before the start: a kill before the write leaves it unmarked, and it is written again.

With more machines than the concurrency, the first wave's machines start while the second
wave deploys, so `up` costs waves x deploy + start, not waves x (deploy + start). A deploy
that fails is destroyed and tried again (the name must be free first), up to
DEPLOY_ATTEMPTS times; the cloud's reason is what the user sees if it keeps failing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from stackfleet.errors import CloudError
from stackfleet.provisioners.base import (
    Machine,
    MachineRequest,
    MachineState,
    Provisioner,
    ReadyHook,
)
from stackfleet.provisioners.operations import MachineCount, Pipeline, Task, is_already_done

log = logging.getLogger("stackfleet.create")

DEPLOY_ATTEMPTS = 3


def create_machines(
    prov: Provisioner,
    requests: Sequence[MachineRequest],
    ready: ReadyHook | None = None,
    written_tags: Mapping[str, str] | None = None,
) -> list[Machine]:
    """Create machines concurrently; returns them with whatever IP is known yet.

    `ready`, if given, is called as machines come into existence (all created so far that
    it has not yet claimed); it returns final userdata by machine id for those that may
    boot now: the userdata is written, then `written_tags` set, then they are started
    while the rest are still being created. Those come back Running.
    """
    if not requests:
        return []
    return _CreateRun(prov, requests, ready, written_tags or {}).execute()


class _CreateRun:
    def __init__(
        self,
        prov: Provisioner,
        requests: Sequence[MachineRequest],
        ready: ReadyHook | None,
        written_tags: Mapping[str, str],
    ) -> None:
        self.prov = prov
        self.ops = prov.operations
        self.written_tags = written_tags
        self.requests = {r.name: r for r in requests}
        self.ready = ready
        self.attempts = dict.fromkeys(self.requests, 0)
        self.created: dict[str, Machine] = {}  # name -> machine as listed after deploy
        self.claimed: set[str] = set()  # names handed final userdata and started
        self.failed: dict[str, str] = {}

    def execute(self) -> list[Machine]:
        c = self.ops.concurrency
        n = len(self.requests)
        booted_here = self.ready is not None  # allocate: created stopped, started here
        pipe = self.ops.pipeline(
            self.prov.timeout_s,
            f"{n} VMs to create",
            on_round=self._on_round,
            limits={"deploy": c, "start": c},
            count=MachineCount(
                f"{n} machines to deploy and start" if booted_here else f"{n} machines to deploy",
                n,
                self._machines_done,
            ),
        )
        for request in self.requests.values():
            pipe.add(self._deploy_task(request))
        pipe.run()
        if self.failed:
            reasons = "; ".join(f"{n}: {self.failed[n]}" for n in sorted(self.failed))
            raise CloudError(f"could not deploy {len(self.failed)} VM(s): {reasons}")
        return self._final_listing()

    def _machines_done(self, pipe: Pipeline) -> int:
        """Machines through their last step: deployed, and started where we start them."""
        started = {t.key for t in pipe.done if t.lane == "start"}
        return sum(
            1
            for name, request in self.requests.items()
            if name in self.created and (self.ready is None or request.start or name in started)
        )

    def _deploy_task(self, request: MachineRequest, after: tuple[str, ...] = ()) -> Task:
        gates = tuple(g for g in self.prov.deploy_gate(request) if g not in self.ops.finished)
        return Task(
            request.name, lambda: self.prov.begin_deploy(request), "deploy", after + gates, request
        )

    def _on_round(self, pipe: Pipeline, finished: list[Task]) -> None:
        deployed = [t for t in finished if t.lane == "deploy"]
        if deployed:
            self._check_deploys(pipe, deployed)
        if self.ready is not None:
            self._start_ready(pipe)

    def _check_deploys(self, pipe: Pipeline, deployed: list[Task]) -> None:
        listed = {m.name: m for m in self.prov.machines_named([t.key for t in deployed])}
        fresh: dict[str, list[str]] = {}
        for task in deployed:
            request: MachineRequest = task.data
            machine = listed.get(request.name)
            want = MachineState.RUNNING if request.start else MachineState.STOPPED
            if machine is not None and machine.state == want:
                self.created[request.name] = replace(machine, role=request.role)
                fresh.setdefault(request.role, []).append(machine.id)
                continue
            reason = self.prov.operation_failure(task.op_id)
            self.attempts[request.name] += 1
            if self.attempts[request.name] >= DEPLOY_ATTEMPTS:
                self.failed[request.name] = reason
                continue
            log.info("deploy of %s failed (%s); trying again", request.name, reason)
            after: tuple[str, ...] = ()
            if machine is not None:  # the failed machine holds the name: destroy it first
                op = self.prov.begin_destroy(machine.id)
                if not is_already_done(op):
                    after = (op,)
            pipe.add(self._deploy_task(request, after))
        # Names first (a kill before this leaves machines found by name), tags right after.
        for role, ids in fresh.items():
            tags = next(r.tags for r in self.requests.values() if r.role == role)
            self.prov.tag_machines(ids, tags, verify=False)

    def _start_ready(self, pipe: Pipeline) -> None:
        waiting = [
            m
            for name, m in self.created.items()
            if name not in self.claimed and m.state == MachineState.STOPPED
        ]
        if not waiting:
            return
        docs = self.ready(waiting) if self.ready else {}
        if not docs:
            return
        self.prov.set_userdata(docs)
        # Only now: a kill before this line leaves the machine unmarked, so it is redone.
        self.prov.tag_machines(list(docs), self.written_tags, verify=True)
        by_id = {m.id: m for m in waiting}
        for machine_id in docs:
            name = by_id[machine_id].name
            self.claimed.add(name)
            pipe.add(Task(name, self._starter(machine_id), "start", (), machine_id))

    def _starter(self, machine_id: str) -> Callable[[], str]:
        return lambda: self.prov.begin_start(machine_id)

    def _final_listing(self) -> list[Machine]:
        ids = [m.id for m in self.created.values()]
        listed = {m.id: m for m in self.prov.machines_by_id(ids)}
        not_running = [
            self.created[n].id
            for n in self.claimed
            if getattr(listed.get(self.created[n].id), "state", None) != MachineState.RUNNING
        ]
        if not_running:
            # Their start failed: start them again (start retries, then says why).
            self.prov.start_machines(not_running)
            listed = {m.id: m for m in self.prov.machines_by_id(ids)}
        return [
            replace(listed.get(self.created[n].id, self.created[n]), role=r.role)
            for n, r in self.requests.items()
        ]
