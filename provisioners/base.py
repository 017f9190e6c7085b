"""What the engine needs from a cloud, in words that are not any one cloud's.

The engine (plan, up, down, lock, bootstrap) talks only to `Provisioner`. Each cloud's
implementation lives in its own folder under `provisioners/` and is picked by
`provisioners/registry.py` from the spec's `cloud.provider`. Batch methods take lists
because every cloud is faster when many slow operations are in flight at once.

Slow operations are started by `begin_*` primitives that return an operation id, and
waited on together by `pending()` (see provisioners/operations.py): the engine builds its
pipelines (create: deploy, write userdata, tag, start) from them, so no provider
re-implements that order.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from stackfleet.security_groups.rules import Rule

if TYPE_CHECKING:
    from stackfleet.provisioners.operations import OperationRunner

CLUSTER_TAG = "stackfleet:cluster"
ROLE_TAG = "stackfleet:role"
EXPIRES_TAG = "stackfleet:expires"
# Set on a machine once it has booted with its final userdata.
BOOTSTRAP_TAG = "stackfleet:bootstrap"

# (what, machines done, machines in all): how far a long wait is, counted in machines.
Progress = Callable[[str, int, int], None]


class MachineState(StrEnum):
    """A machine's state in the engine's words; each provider maps its cloud's states to
    these (and keeps the cloud's own word in `Machine.cloud_state`). The value is what
    `status` shows, the same for every cloud."""

    PENDING = "Pending"  # being created
    STARTING = "Starting"
    RUNNING = "Running"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    MIGRATING = "Migrating"  # moving between hosts (or resizing): busy, comes back
    ERROR = "Error"  # the cloud gave up on it: replaced by the next `up`
    GONE = "Gone"  # destroyed or being removed: replaced by the next `up`
    UNKNOWN = "Unknown"  # the cloud does not know (a host down) or says something unmapped

    @property
    def broken(self) -> bool:
        """Cannot become a running member again: `up` replaces it."""
        return self in (MachineState.ERROR, MachineState.GONE)

    @property
    def transitional(self) -> bool:
        """On its way somewhere (an earlier run's operation): `up` waits for it to settle."""
        return self in _TRANSITIONAL


_TRANSITIONAL = frozenset(
    {
        MachineState.PENDING,
        MachineState.STARTING,
        MachineState.STOPPING,
        MachineState.MIGRATING,
    }
)


@dataclass(frozen=True)
class UserdataRule:
    """How a cloud measures userdata, and the limit it has unless the spec says otherwise
    (clouds do not tell users their limit: `cloud.userdata_limit` is what counts)."""

    unit: str  # how sizes are counted, for messages, e.g. "bytes"
    default_limit: int
    size: Callable[[str], int]

    def check(self, docs: Mapping[str, str], limit: int) -> dict[str, int]:
        """The documents over `limit`, with their sizes."""
        sizes = {name: self.size(text) for name, text in docs.items()}
        return {name: n for name, n in sizes.items() if n > limit}


@dataclass(frozen=True)
class Zone:
    id: str
    name: str
    # True when a machine's private IP is known as soon as it is created, before it
    # boots (e.g. an advanced zone): the `allocate` bootstrap can then render
    # final userdata before the first boot.
    ip_known_at_create: bool
    # Largest userdata the cloud accepts, counted as the provider's UserdataRule counts.
    userdata_limit: int


@dataclass(frozen=True)
class Image:
    id: str
    name: str


@dataclass(frozen=True)
class Size:
    id: str
    name: str
    cpus: int
    memory_mb: int


@dataclass(frozen=True)
class Machine:
    id: str
    name: str
    role: str
    state: MachineState
    private_ip: str | None
    public_ip: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    # Nothing runs behind it (a simulator's VM): never open a connection to its address.
    simulated: bool = False
    # Its address exists only inside this local network namespace (the QEMU mini-cloud).
    netns: str | None = None
    # What it was deployed from, as the cloud reports it ("" where unknown): a spec that
    # asks for another offering or template is refused, never silently ignored.
    offering_id: str = ""
    offering: str = ""
    template_id: str = ""
    template: str = ""
    # The cloud's own word for the state (e.g. "running"), for debugging.
    cloud_state: str = ""


@dataclass(frozen=True)
class ManagedRule:
    """A rule as it exists in the cloud, with its id and whether stackfleet made it."""

    id: str
    rule: Rule
    managed: bool


@dataclass(frozen=True)
class Group:
    id: str
    name: str
    rules: tuple[ManagedRule, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SSHKey:
    name: str
    fingerprint: str


@dataclass(frozen=True)
class SpreadGroup:
    """Machines in one spread group land on different hosts (anti-affinity)."""

    id: str
    name: str


@dataclass
class LiveState:
    """Everything the cloud holds for one cluster, found by tags and by names."""

    cluster: str
    machines: list[Machine] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    keys: list[SSHKey] = field(default_factory=list)
    spread_groups: list[SpreadGroup] = field(default_factory=list)
    tags: Mapping[str, str] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (self.machines or self.groups or self.keys or self.spread_groups)


@dataclass(frozen=True)
class MachineRequest:
    name: str
    role: str
    zone_id: str
    image_id: str
    size_id: str
    disk_gb: int | None
    group_names: tuple[str, ...]
    key_name: str
    userdata: str  # plain text; the provisioner encodes it as the cloud wants
    spread_group: str | None
    start: bool
    tags: Mapping[str, str]


# Called with machines as they are created; answers {machine id: final userdata}.
ReadyHook = Callable[[Sequence[Machine]], Mapping[str, str]]


@dataclass(frozen=True)
class ClusterSummary:
    name: str
    machines: int
    expires: str | None


class Provisioner(abc.ABC):
    """One cloud account. Methods raise stackfleet.errors types, never provider ones."""

    # How this cloud measures userdata, and its usual limit.
    userdata_rule: UserdataRule
    # Every wait this provisioner does ends by then.
    timeout_s: float

    @property
    @abc.abstractmethod
    def operations(self) -> OperationRunner:
        """Polls this cloud's operations (the ids `begin_*` return) together."""

    # --- lookups (read-only) -------------------------------------------------
    @abc.abstractmethod
    def find_zone(self, name_or_id: str) -> Zone: ...

    @abc.abstractmethod
    def find_image(self, zone: Zone, name_or_id: str, field: str = "template") -> Image:
        """`field` names the spec field in the NotFound message."""

    @abc.abstractmethod
    def find_size(self, zone: Zone, name_or_id: str, field: str = "offering") -> Size: ...

    @abc.abstractmethod
    def machine_headroom(self) -> int | None:
        """How many more machines the account may create, or None if unlimited."""

    @abc.abstractmethod
    def live_state(self, cluster: str) -> LiveState: ...

    @abc.abstractmethod
    def list_clusters(self) -> list[ClusterSummary]: ...

    @abc.abstractmethod
    def key_fingerprint(self, public_openssh: str) -> str:
        """The fingerprint this cloud shows for a public key, to compare with SSHKey's."""

    @abc.abstractmethod
    def machines_named(self, names: Sequence[str]) -> list[Machine]:
        """The machines with these names (none for a name not found)."""

    @abc.abstractmethod
    def machines_by_id(self, ids: Sequence[str]) -> list[Machine]:
        """The machines with these ids that still exist."""

    # --- mutations (each idempotent where the cloud allows) ------------------
    @abc.abstractmethod
    def import_ssh_key(self, name: str, public_key: str) -> SSHKey: ...

    @abc.abstractmethod
    def create_group(self, name: str, description: str, tags: Mapping[str, str]) -> Group: ...

    @abc.abstractmethod
    def change_rules(
        self,
        additions: Mapping[str, Sequence[Rule]],
        removals: Sequence[str],
        adopt: Sequence[str],
        tags: Mapping[str, str],
    ) -> None:
        """Add rules per group name (source groups by name) and mark them as ours;
        revoke rules by id; mark existing rules (by id) as ours."""

    @abc.abstractmethod
    def create_spread_group(self, name: str) -> SpreadGroup: ...

    @abc.abstractmethod
    def tag_machines(
        self,
        ids: Sequence[str],
        tags: Mapping[str, str],
        verify: bool = True,
        replacing: Collection[str] = (),
    ) -> None:
        """Set tags; may return before the cloud has (settle() waits). `verify`: settle()
        also makes sure they were set (without: a later read finds them, or a re-run).
        `replacing`: the keys of `tags` that some of these machines carry already, with
        another value (the caller read them): a cloud that writes a tag once (no update
        in place) takes the old ones away first."""

    @abc.abstractmethod
    def set_userdata(self, userdata: Mapping[str, str]) -> None:
        """Replace userdata of stopped machines, by machine id."""

    @abc.abstractmethod
    def start_machines(self, ids: Sequence[str]) -> list[Machine]:
        """Start them (again, for those that fail once) and return them Running."""

    @abc.abstractmethod
    def stop_machines(self, ids: Sequence[str]) -> list[Machine]: ...

    @abc.abstractmethod
    def destroy_machines(self, ids: Sequence[str]) -> None:
        """Destroy for good: nothing of them may stay behind."""

    @abc.abstractmethod
    def delete_ssh_key(self, name: str) -> None: ...

    @abc.abstractmethod
    def teardown(self, live: LiveState, on_phase: Callable[[str], None]) -> None:
        """Remove everything in `live` (machines, rules, groups, spread groups, keys), in
        the order this cloud needs and as much at once as it allows; return when all is
        done or raise CloudError (`down` then reads the cloud again and retries).
        `on_phase` is told what is being done, for the display."""

    @abc.abstractmethod
    def settle(self) -> None:
        """Wait for every change started so far (rules, tags, groups) and raise the first
        failure. Mutations may return before the cloud has finished them."""

    @abc.abstractmethod
    def take_lock(self, cluster: str, holder: str) -> str | None:
        """Create the cluster's lock record naming `holder`, atomically (the cloud refuses
        a second one). None: the lock is now ours. Else: the holder the existing one names."""

    @abc.abstractmethod
    def release_lock(self, cluster: str, holder: str | None) -> None:
        """Remove the lock record if it names `holder` (whatever it names, with None)."""

    @abc.abstractmethod
    def set_cluster_tags(self, cluster: str, tags: Mapping[str, str | None]) -> None:
        """Set (or, with None, remove) cluster-wide tags such as the expiry."""

    # Whether security groups carry tags (create_group's `tags`). A provider whose groups
    # cannot (a cloud whose groups take no labels) finds them by name alone and says False.
    group_tags: bool = True

    def tag_group(
        self, group_id: str, tags: Mapping[str, str], replacing: Collection[str] = ()
    ) -> None:
        """Set tags on an existing group: one a run killed between creating and tagging it
        left bare (`list` finds clusters by their etcd group's tags), or one whose tags
        were changed by hand (`replacing`: as for tag_machines). Only called when
        `group_tags` is True."""
        raise NotImplementedError(f"{type(self).__name__} has group_tags but no tag_group")

    # --- create primitives: the engine's create pipeline (provisioners/create.py) ---
    @abc.abstractmethod
    def begin_deploy(self, request: MachineRequest) -> str:
        """Start creating one machine (or adopt one of that name found already there);
        returns the operation id. The machine keeps `request.role`."""

    def deploy_gate(self, request: MachineRequest) -> tuple[str, ...]:
        """Operation ids the deploy must wait for (e.g. its spread group's creation)."""
        return ()

    @abc.abstractmethod
    def begin_start(self, machine_id: str) -> str: ...

    @abc.abstractmethod
    def begin_destroy(self, machine_id: str) -> str:
        """Start destroying one machine for good (an already-gone one: a done id)."""

    @abc.abstractmethod
    def operation_failure(self, op_id: str | None) -> str:
        """Why a finished operation did not do its job, in one short phrase."""
