"""What the engine needs from a cloud, in words that are not any one cloud's.

The engine (plan, apply, bootstrap) talks only to `Provisioner`. The CloudStack
implementation lives in `provisioners/cloudstack/`; an exoscale API v2 one fits the
same interface. Batch methods take lists because every cloud is faster when many
slow operations are in flight at once; how they are waited on is the provisioner's
business (CloudStack: async jobs polled together).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from stackfleet.security_groups.rules import Rule

CLUSTER_TAG = "stackfleet:cluster"
ROLE_TAG = "stackfleet:role"
EXPIRES_TAG = "stackfleet:expires"
# The usual cap on userdata, in base64 characters (CloudStack's vm.userdata.max.length
# default); `render` compares against it when no zone has been asked.
DEFAULT_USERDATA_LIMIT = 32768
# Set on a machine once it has booted with its final userdata.
BOOTSTRAP_TAG = "stackfleet:bootstrap"


@dataclass(frozen=True)
class Zone:
    id: str
    name: str
    # True when a machine's private IP is known as soon as it is created, before it
    # boots (CloudStack advanced zones): the `allocate` bootstrap can then render
    # final userdata before the first boot.
    ip_known_at_create: bool
    # Largest userdata the cloud accepts, counted in base64 characters.
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
    state: str  # "Running", "Stopped", "Starting", "Stopping", "Error", "Destroyed", ...
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
    def create_machines(
        self,
        requests: Sequence[MachineRequest],
        ready: ReadyHook | None = None,
        written_tags: Mapping[str, str] | None = None,
    ) -> list[Machine]:
        """Create machines concurrently; returns them with whatever IP is known yet.

        `ready`, if given, is called as machines come into existence (all created so
        far that it has not yet claimed); it returns final userdata by machine id for
        those that may boot now, and the provisioner writes it, then sets
        `written_tags` on them (never before the write), then starts them while the
        rest are still being created. Those come back Running.
        """

    @abc.abstractmethod
    def tag_machines(self, ids: Sequence[str], tags: Mapping[str, str]) -> None: ...

    @abc.abstractmethod
    def set_userdata(self, userdata: Mapping[str, str]) -> None:
        """Replace userdata of stopped machines, by machine id."""

    @abc.abstractmethod
    def start_machines(self, ids: Sequence[str]) -> list[Machine]: ...

    @abc.abstractmethod
    def stop_machines(self, ids: Sequence[str]) -> list[Machine]: ...

    @abc.abstractmethod
    def destroy_machines(self, ids: Sequence[str]) -> None:
        """Destroy and expunge: nothing of them may stay behind."""

    @abc.abstractmethod
    def delete_groups(self, ids: Sequence[str]) -> None: ...

    @abc.abstractmethod
    def delete_ssh_key(self, name: str) -> None: ...

    @abc.abstractmethod
    def teardown(
        self,
        machine_ids: Sequence[str],
        rule_ids: Sequence[str],
        spread_group_ids: Sequence[str] = (),
    ) -> None:
        """Destroy machines and revoke rules at the same time, and delete the spread groups
        as soon as the machines are gone; return when all is done. Rules are sent in the
        order given (clouds may run one group's changes in turn)."""

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
