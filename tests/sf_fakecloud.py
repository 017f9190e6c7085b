"""An in-memory cloud behind the Provisioner interface: the engine without any HTTP.

`FakeProvisioner` keeps machines, groups, rules, keys, spread groups, tags and the lock in
dicts. Slow operations (deploy, start, destroy) finish on the next poll, or after
`op_rounds` polls, so the engine's pipelines run as they do on a cloud, in milliseconds.
`fail_deploys` makes the next N deploys of a name end in the ERROR state (as a cloud's
failed job leaves a VM), and `calls` records what the engine asked, for assertions.

It follows the same contract as the real providers (tests/contract/ holds it to it): the
engine tests in tests/unit/test_engine_*.py use it to test plan, up, down and the lock.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from stackfleet.errors import CloudError, NotFound
from stackfleet.provisioners import naming
from stackfleet.provisioners.base import (
    CLUSTER_TAG,
    ROLE_TAG,
    ClusterSummary,
    Group,
    Image,
    LiveState,
    Machine,
    MachineRequest,
    MachineState,
    ManagedRule,
    Provisioner,
    Size,
    SpreadGroup,
    SSHKey,
    UserdataRule,
    Zone,
)
from stackfleet.provisioners.operations import OperationRunner, already_done
from stackfleet.security_groups.rules import Rule

# Counted in bytes, as most clouds do.
RULE = UserdataRule(unit="bytes", default_limit=32768, size=lambda text: len(text.encode()))
# The simulator's catalog names, so that a spec written for one runs on the other.
ZONE = Zone("zone-1", "fake-1", ip_known_at_create=True, userdata_limit=32768)
IMAGES = {"img-1": "Flatcar Container Linux stable", "img-2": "Ubuntu 24.04 LTS"}
SIZES = {
    "size-1": Size("size-1", "Small", 2, 2048),
    "size-2": Size("size-2", "Medium", 2, 4096),
    "size-3": Size("size-3", "Large", 4, 8192),
}


@dataclass
class _VM:
    id: str
    name: str
    role: str
    state: MachineState
    ip: str
    userdata: str
    image_id: str
    size_id: str
    groups: tuple[str, ...]
    spread: str | None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class _Op:
    rounds_left: int
    on_done: Callable[[], None]


class FakeCloud:
    """The cloud's state, shared by every FakeProvisioner opened on it (like an account)."""

    def __init__(self, vm_limit: int | None = None, op_rounds: int = 1) -> None:
        self.vms: dict[str, _VM] = {}
        self.groups: dict[str, Group] = {}  # id -> group (rules inside)
        self.group_tags: dict[str, dict[str, str]] = {}
        self.rule_tags: dict[str, dict[str, str]] = {}
        self.keys: dict[str, SSHKey] = {}
        self.spread: dict[str, SpreadGroup] = {}
        self.locks: dict[str, str] = {}  # cluster -> holder
        self.vm_limit = vm_limit
        self.op_rounds = op_rounds
        self.fail_deploys: Counter[str] = Counter()
        self.calls: list[str] = []
        self._ids = itertools.count(1)
        self._ips = itertools.count(10)
        self.lock = threading.Lock()

    def new_id(self, kind: str) -> str:
        return f"{kind}-{next(self._ids)}"

    def new_ip(self) -> str:
        n = next(self._ips)
        return f"10.1.{n // 250}.{n % 250 + 2}"


class _Runner(OperationRunner):
    def __init__(self, cloud: FakeCloud, concurrency: int) -> None:
        super().__init__(concurrency, first_interval_s=0.0, max_interval_s=0.0)
        self.cloud = cloud
        self.ops: dict[str, _Op] = {}

    def start(self, on_done: Callable[[], None]) -> str:
        op_id = self.cloud.new_id("op")
        self.ops[op_id] = _Op(self.cloud.op_rounds, on_done)
        return op_id

    def _pending(self, op_ids: set[str]) -> set[str]:
        pending = set()
        for op_id in sorted(op_ids):
            op = self.ops.get(op_id)
            if op is None:
                continue
            op.rounds_left -= 1
            if op.rounds_left > 0:
                pending.add(op_id)
                continue
            del self.ops[op_id]
            op.on_done()
        return pending


def _write_once(
    have: dict[str, str], tags: Mapping[str, str], replacing: Collection[str], what: str
) -> None:
    """The strictest cloud's tags (CloudStack's): a key is written once, so a new value
    for a key the resource has must be named in `replacing` (taken away first)."""
    kept = {k: v for k, v in have.items() if k not in replacing}
    clash = sorted(set(kept) & set(tags))
    if clash:
        raise CloudError(f"tag {clash[0]} already on {what}")
    have.clear()
    have.update({**kept, **tags})


class FakeProvisioner(Provisioner):
    userdata_rule = RULE

    def __init__(self, cloud: FakeCloud, concurrency: int = 4, timeout_s: float = 60) -> None:
        self.cloud = cloud
        self.timeout_s = timeout_s
        self._runner = _Runner(cloud, concurrency)
        self._roles: dict[str, str] = {}

    @property
    def operations(self) -> OperationRunner:
        return self._runner

    def _call(self, what: str) -> None:
        self.cloud.calls.append(what)

    # --- lookups -------------------------------------------------------------------
    def find_zone(self, name_or_id: str) -> Zone:
        if name_or_id not in (ZONE.id, ZONE.name):
            raise NotFound(f"cloud.zone: no zone named {name_or_id!r}; available: {ZONE.name}")
        return ZONE

    def find_image(self, zone: Zone, name_or_id: str, field: str = "template") -> Image:
        for image_id, name in IMAGES.items():
            if name_or_id in (image_id, name):
                return Image(image_id, name)
        raise NotFound(f"{field}: no template named {name_or_id!r}")

    def find_size(self, zone: Zone, name_or_id: str, field: str = "offering") -> Size:
        for size in SIZES.values():
            if name_or_id in (size.id, size.name):
                return size
        raise NotFound(f"{field}: no offering named {name_or_id!r}")

    def machine_headroom(self) -> int | None:
        if self.cloud.vm_limit is None:
            return None
        return max(self.cloud.vm_limit - len(self.cloud.vms), 0)

    def _machine(self, vm: _VM) -> Machine:
        return Machine(
            id=vm.id,
            name=vm.name,
            role=vm.tags.get(ROLE_TAG) or vm.role,
            state=vm.state,
            cloud_state=vm.state.value.lower(),
            private_ip=vm.ip,
            tags=dict(vm.tags),
            simulated=True,
            offering_id=vm.size_id,
            offering=SIZES[vm.size_id].name,
            template_id=vm.image_id,
            template=IMAGES[vm.image_id],
        )

    def _mine(self, cluster: str, name: str, tags: Mapping[str, str]) -> bool:
        return tags.get(CLUSTER_TAG) == cluster or name.startswith(f"{cluster}-")

    def live_state(self, cluster: str) -> LiveState:
        self._call("live_state")
        machines = [
            self._machine(vm)
            for vm in self.cloud.vms.values()
            if self._mine(cluster, vm.name, vm.tags)
        ]
        groups = []
        cluster_tags: dict[str, str] = {}
        for g in self.cloud.groups.values():
            tags = self.cloud.group_tags.get(g.id, {})
            if g.name == naming.lock_name(cluster) or not self._mine(cluster, g.name, tags):
                continue
            rules = tuple(
                replace(r, managed=self.cloud.rule_tags.get(r.id, {}).get(CLUSTER_TAG) == cluster)
                for r in g.rules
            )
            groups.append(replace(g, rules=rules, tags=dict(tags)))
            if g.name == naming.group_name(cluster, "etcd"):
                cluster_tags = dict(tags)
        keys = [k for k in self.cloud.keys.values() if k.name == naming.key_name(cluster)]
        spread = [
            s for s in self.cloud.spread.values() if s.name == naming.spread_group_name(cluster)
        ]
        return LiveState(cluster, machines, groups, keys, spread, cluster_tags)

    def list_clusters(self) -> list[ClusterSummary]:
        out = []
        for g in self.cloud.groups.values():
            tags = self.cloud.group_tags.get(g.id, {})
            name = tags.get(CLUSTER_TAG)
            if name and tags.get(ROLE_TAG) == "etcd":
                count = sum(1 for vm in self.cloud.vms.values() if vm.tags.get(CLUSTER_TAG) == name)
                out.append(ClusterSummary(name, count, tags.get("stackfleet:expires")))
        return sorted(out, key=lambda s: s.name)

    def key_fingerprint(self, public_openssh: str) -> str:
        blob = base64.b64decode(public_openssh.split()[1])
        return hashlib.sha256(blob).hexdigest()

    def machines_named(self, names: Sequence[str]) -> list[Machine]:
        wanted = set(names)
        return [self._machine(vm) for vm in self.cloud.vms.values() if vm.name in wanted]

    def machines_by_id(self, ids: Sequence[str]) -> list[Machine]:
        return [self._machine(self.cloud.vms[i]) for i in ids if i in self.cloud.vms]

    # --- keys, groups, rules -------------------------------------------------------
    def import_ssh_key(self, name: str, public_key: str) -> SSHKey:
        self._call(f"import_ssh_key {name}")
        if name in self.cloud.keys:
            raise CloudError(f"ssh key {name} already exists")
        key = SSHKey(name, self.key_fingerprint(public_key))
        self.cloud.keys[name] = key
        return key

    def create_group(self, name: str, description: str, tags: Mapping[str, str]) -> Group:
        self._call(f"create_group {name}")
        found = next((g for g in self.cloud.groups.values() if g.name == name), None)
        if found is None:
            found = Group(self.cloud.new_id("sg"), name)
            self.cloud.groups[found.id] = found
        self.cloud.group_tags.setdefault(found.id, {}).update(tags)
        return found

    def tag_group(
        self, group_id: str, tags: Mapping[str, str], replacing: Collection[str] = ()
    ) -> None:
        self._call(f"tag_group {group_id}")
        _write_once(self.cloud.group_tags.setdefault(group_id, {}), tags, replacing, group_id)

    def _group_named(self, name: str) -> Group:
        for g in self.cloud.groups.values():
            if g.name == name:
                return g
        raise CloudError(f"no security group {name}")

    def change_rules(
        self,
        additions: Mapping[str, Sequence[Rule]],
        removals: Sequence[str],
        adopt: Sequence[str],
        tags: Mapping[str, str],
    ) -> None:
        self._call("change_rules")
        for rule_id in adopt:
            self.cloud.rule_tags.setdefault(rule_id, {}).update(tags)
        for name, rules in additions.items():
            group = self._group_named(name)
            new = []
            for rule in rules:
                if rule.source_group is not None:
                    self._group_named(rule.source_group)  # a group rule names a real group
                rule_id = self.cloud.new_id("rule")
                self.cloud.rule_tags[rule_id] = dict(tags)
                new.append(ManagedRule(rule_id, rule, managed=True))
            self.cloud.groups[group.id] = replace(group, rules=group.rules + tuple(new))
        self._revoke(removals)

    def _revoke(self, rule_ids: Sequence[str]) -> None:
        gone = set(rule_ids)
        for gid, g in list(self.cloud.groups.items()):
            self.cloud.groups[gid] = replace(g, rules=tuple(r for r in g.rules if r.id not in gone))

    def create_spread_group(self, name: str) -> SpreadGroup:
        self._call(f"create_spread_group {name}")
        found = next((s for s in self.cloud.spread.values() if s.name == name), None)
        if found is None:
            found = SpreadGroup(self.cloud.new_id("ag"), name)
            self.cloud.spread[found.id] = found
        return found

    def tag_machines(
        self,
        ids: Sequence[str],
        tags: Mapping[str, str],
        verify: bool = True,
        replacing: Collection[str] = (),
    ) -> None:
        self._call(f"tag_machines {len(ids)} {sorted(tags)}")
        for machine_id in ids:
            _write_once(self.cloud.vms[machine_id].tags, tags, replacing, machine_id)

    def set_cluster_tags(self, cluster: str, tags: Mapping[str, str | None]) -> None:
        self._call("set_cluster_tags")
        group = next(
            (g for g in self.cloud.groups.values() if g.name == naming.group_name(cluster, "etcd")),
            None,
        )
        if group is None:
            return
        current = self.cloud.group_tags.setdefault(group.id, {})
        for key, value in tags.items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = value

    def set_userdata(self, userdata: Mapping[str, str]) -> None:
        self._call(f"set_userdata {len(userdata)}")
        for machine_id, text in userdata.items():
            vm = self.cloud.vms[machine_id]
            if vm.state != MachineState.STOPPED:
                raise CloudError(f"{vm.name}: userdata can change only while stopped")
            vm.userdata = text

    # --- machines ------------------------------------------------------------------
    def begin_deploy(self, request: MachineRequest) -> str:
        self._call(f"deploy {request.name}")
        if self.userdata_rule.size(request.userdata) > ZONE.userdata_limit:
            raise CloudError(f"{request.name}: userdata too long")
        with self.cloud.lock:
            existing = next((v for v in self.cloud.vms.values() if v.name == request.name), None)
            if existing is not None:
                return already_done(existing.id)
            if self.cloud.vm_limit is not None and len(self.cloud.vms) >= self.cloud.vm_limit:
                raise CloudError("the account's VM limit is reached", code=535)
            vm = _VM(
                id=self.cloud.new_id("vm"),
                name=request.name,
                role=request.role,
                state=MachineState.PENDING,
                ip=self.cloud.new_ip(),
                userdata=request.userdata,
                image_id=request.image_id,
                size_id=request.size_id,
                groups=request.group_names,
                spread=request.spread_group,
            )
            self.cloud.vms[vm.id] = vm
        failed = self.cloud.fail_deploys[request.name] > 0
        if failed:
            self.cloud.fail_deploys[request.name] -= 1

        def done() -> None:
            if failed:
                vm.state = MachineState.ERROR
            else:
                vm.state = MachineState.RUNNING if request.start else MachineState.STOPPED

        return self._runner.start(done)

    def begin_start(self, machine_id: str) -> str:
        self._call(f"start {machine_id}")
        vm = self.cloud.vms[machine_id]
        vm.state = MachineState.STARTING

        def done() -> None:
            vm.state = MachineState.RUNNING

        return self._runner.start(done)

    def begin_destroy(self, machine_id: str) -> str:
        self._call(f"destroy {machine_id}")
        vm = self.cloud.vms.get(machine_id)
        if vm is None:
            return already_done(machine_id)
        vm.state = MachineState.GONE
        return self._runner.start(lambda: self.cloud.vms.pop(machine_id, None))

    def operation_failure(self, op_id: str | None) -> str:
        return "the machine went into the Error state"

    def _batch(self, ids: Sequence[str], begin: Callable[[str], str], what: str) -> None:
        from stackfleet.provisioners.operations import Submission

        self._runner.run(
            [Submission(i, lambda i=i: begin(i)) for i in ids], self.timeout_s, what, machines=True
        )

    def start_machines(self, ids: Sequence[str]) -> list[Machine]:
        self._batch(ids, self.begin_start, f"{len(ids)} machines to start")
        return self.machines_by_id(ids)

    def stop_machines(self, ids: Sequence[str]) -> list[Machine]:
        self._call(f"stop {len(ids)}")
        for machine_id in ids:
            self.cloud.vms[machine_id].state = MachineState.STOPPED
        return self.machines_by_id(ids)

    def destroy_machines(self, ids: Sequence[str]) -> None:
        self._batch(ids, self.begin_destroy, f"{len(ids)} machines to destroy")

    def delete_ssh_key(self, name: str) -> None:
        self._call(f"delete_ssh_key {name}")
        self.cloud.keys.pop(name, None)

    def teardown(self, live: LiveState, on_phase: Callable[[str], None]) -> None:
        """Machines, then rules, then groups (a group a rule or a machine still names is
        refused, as on CloudStack), then spread groups and the key."""
        on_phase(f"removing {len(live.machines)} machine(s)")
        self.destroy_machines([m.id for m in live.machines if m.id in self.cloud.vms])
        self._revoke([r.id for g in live.groups for r in g.rules])
        for g in live.groups:
            if any(g.name in vm.groups for vm in self.cloud.vms.values()):
                raise CloudError(f"{g.name}: still used by a machine")
            self.cloud.groups.pop(g.id, None)
            self.cloud.group_tags.pop(g.id, None)
        for s in live.spread_groups:
            self.cloud.spread.pop(s.id, None)
        for k in live.keys:
            self.delete_ssh_key(k.name)

    def settle(self) -> None:
        self._call("settle")

    # --- the lock ------------------------------------------------------------------
    def take_lock(self, cluster: str, holder: str) -> str | None:
        self._call(f"take_lock {cluster}")
        with self.cloud.lock:
            held = self.cloud.locks.setdefault(cluster, holder)
        return None if held == holder else held

    def release_lock(self, cluster: str, holder: str | None) -> None:
        self._call(f"release_lock {cluster}")
        with self.cloud.lock:
            if holder is None or self.cloud.locks.get(cluster) == holder:
                self.cloud.locks.pop(cluster, None)


@contextmanager
def open_fake(cloud: FakeCloud, concurrency: int = 4) -> Iterator[FakeProvisioner]:
    yield FakeProvisioner(cloud, concurrency)
