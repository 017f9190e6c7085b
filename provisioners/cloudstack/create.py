"""Creating machines as one pipeline: deploy, then (when the engine says so) write the
final userdata and start, per VM, while the other VMs are still deploying.

With more VMs than `concurrency`, the first wave's VMs start while the second wave
deploys, so `up` costs waves x deploy + start, not waves x (deploy + start). A deploy
that fails is expunged and tried again (the name must be free first), up to
DEPLOY_ATTEMPTS times; its job's error text is what the user sees if it keeps failing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from stackfleet.errors import CloudError
from stackfleet.provisioners.base import Machine, MachineRequest, ReadyHook
from stackfleet.provisioners.cloudstack.jobs import MachineCount, Pipeline, Task

if TYPE_CHECKING:
    from stackfleet.provisioners.cloudstack.provisioner import CloudStackProvisioner

log = logging.getLogger("stackfleet.cloudstack")

DEPLOY_ATTEMPTS = 3


class CreateRun:
    def __init__(
        self,
        prov: CloudStackProvisioner,
        requests: Sequence[MachineRequest],
        ready: ReadyHook | None,
        written_tags: Mapping[str, str],
    ) -> None:
        self.prov = prov
        self.written_tags = written_tags
        self.requests = {r.name: r for r in requests}
        self.ready = ready
        self.attempts = dict.fromkeys(self.requests, 0)
        self.created: dict[str, dict[str, Any]] = {}  # name -> VM as listed after deploy
        self.claimed: set[str] = set()  # names handed final userdata and started
        self.failed: dict[str, str] = {}
        self.start_jobs: dict[str, str] = {}

    def execute(self) -> list[Machine]:
        c = self.prov.jobs.concurrency
        n = len(self.requests)
        booted_here = self.ready is not None  # allocate: deployed stopped, started by us
        pipe = self.prov.jobs.pipeline(
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
        gate = self.prov._spread_jobs.get(request.spread_group or "")
        if gate and gate not in self.prov.jobs.finished:
            after = (*after, gate)
        return Task(request.name, self.prov._deployer(request), "deploy", after, request)

    def _on_round(self, pipe: Pipeline, finished: list[Task]) -> None:
        deployed = [t for t in finished if t.lane == "deploy"]
        if deployed:
            self._check_deploys(pipe, deployed)
        if self.ready is not None:
            self._start_ready(pipe)

    def _check_deploys(self, pipe: Pipeline, deployed: list[Task]) -> None:
        listed = {vm["name"]: vm for vm in self.prov._list_vms([t.key for t in deployed])}
        fresh: dict[str, list[str]] = {}
        for task in deployed:
            request: MachineRequest = task.data
            vm = listed.get(request.name)
            want = "Running" if request.start else "Stopped"
            if vm is not None and vm.get("state") == want:
                self.created[request.name] = vm
                self.prov._roles[vm["id"]] = request.role
                fresh.setdefault(request.role, []).append(vm["id"])
                continue
            reason = self.prov._failure_reason(task.jobid)
            self.attempts[request.name] += 1
            if self.attempts[request.name] >= DEPLOY_ATTEMPTS:
                self.failed[request.name] = reason
                continue
            log.info("deploy of %s failed (%s); trying again", request.name, reason)
            after: tuple[str, ...] = ()
            if vm is not None:  # the failed VM holds the name: expunge it first
                jobid = self.prov._destroyer(vm["id"])()
                if not jobid.startswith("adopted:"):  # else gone already: nothing to wait for
                    after = (jobid,)
            pipe.add(self._deploy_task(request, after))
        # Names first (a kill before this leaves VMs found by name), tags right after.
        for role, ids in fresh.items():
            tags = next(r.tags for r in self.requests.values() if r.role == role)
            self.prov._tag("UserVm", ids, tags)

    def _start_ready(self, pipe: Pipeline) -> None:
        waiting = [
            _machine(vm, self.requests[name].role)
            for name, vm in self.created.items()
            if name not in self.claimed and vm.get("state") == "Stopped"
        ]
        if not waiting:
            return
        docs = self.ready(waiting) if self.ready else {}
        if not docs:
            return
        self.prov.set_userdata(docs)
        # Only now: a kill before this line leaves the VM unmarked, so it is redone.
        self.prov._tag("UserVm", list(docs), self.written_tags, check=True)
        by_id = {m.id: m for m in waiting}
        for vm_id in docs:
            name = by_id[vm_id].name
            self.claimed.add(name)
            start = self.prov._simple_job("startVirtualMachine", {"id": vm_id})
            pipe.add(Task(name, start, "start", (), vm_id))

    def _final_listing(self) -> list[Machine]:
        ids = [vm["id"] for vm in self.created.values()]
        listed = {vm["id"]: vm for vm in self.prov._vms_by_id(ids)}
        not_running = [
            self.created[n]["id"]
            for n in self.claimed
            if listed.get(self.created[n]["id"], {}).get("state") != "Running"
        ]
        if not_running:
            # Their start job failed: start them again (start retries, then says why).
            self.prov.start_machines(not_running)
            listed = {vm["id"]: vm for vm in self.prov._vms_by_id(ids)}
        return [
            _machine(listed.get(self.created[n]["id"], self.created[n]), r.role)
            for n, r in self.requests.items()
        ]


def _machine(vm: dict[str, Any], role: str) -> Machine:
    from stackfleet.provisioners.cloudstack.provisioner import _to_machine

    return _to_machine(vm, role)
