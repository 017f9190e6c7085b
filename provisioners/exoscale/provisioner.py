"""The exoscale API v2 implementation of the Provisioner interface.

What maps to what:

| stackfleet | exoscale API v2 |
|---|---|
| machine | compute instance (public IPv4 assigned at create: `allocate`, one boot) |
| machine tags | instance labels (provisioners/exoscale/labels.py) |
| cluster tags (expiry, settings, CAs) | labels of a private network `<cluster>-record` |
| security group, group-to-group rule | security group, rule with `security-group` as source |
| managed rule | rule whose description is `stackfleet:cluster=<name>` |
| spread group | anti-affinity group |
| SSH key | SSH key (MD5 fingerprint) |
| lock | a security group `<cluster>-lock` whose description names the holder (names are unique) |
| operation | operation (get-operation), polled in batches (operations.py) |

Groups, the anti-affinity group and the key carry no labels on exoscale, so they are found by
their names, which stackfleet derives from the cluster's (provisioners/naming.py).
Every mutating call answers an operation; the ones nothing waits for (rules, labels) are
waited for together by settle().
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
import logging
import re
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from stackfleet.errors import CloudError, LimitExceeded, WaitTimeout
from stackfleet.provisioners import naming
from stackfleet.provisioners.base import (
    CLUSTER_TAG,
    EXPIRES_TAG,
    ROLE_TAG,
    ClusterSummary,
    Group,
    Image,
    LiveState,
    Machine,
    MachineRequest,
    MachineState,
    ManagedRule,
    Progress,
    Provisioner,
    Size,
    SpreadGroup,
    SSHKey,
    Zone,
)
from stackfleet.provisioners.exoscale import labels, lookups, record, userdata
from stackfleet.provisioners.exoscale.client import ExoscaleAPI
from stackfleet.provisioners.exoscale.operations import (
    ExoscaleOperations,
    Listing,
    reference_id,
    submitted,
)
from stackfleet.provisioners.operations import (
    MachineCount,
    OperationRunner,
    Task,
    all_ended,
    already_done,
)
from stackfleet.roles import ROLES
from stackfleet.security_groups.rules import Rule

log = logging.getLogger("stackfleet.exoscale")
T = TypeVar("T")

# exoscale's instance states (the spec's `instance-state`), in the engine's words.
STATES = {
    "starting": MachineState.STARTING,
    "running": MachineState.RUNNING,
    "stopping": MachineState.STOPPING,
    "stopped": MachineState.STOPPED,
    "migrating": MachineState.MIGRATING,
    "error": MachineState.ERROR,
    "destroying": MachineState.GONE,
    "destroyed": MachineState.GONE,
    "expunging": MachineState.GONE,
}
# Root disk when the spec gives no disk_gb (the API wants one; exoscale's console offers 50).
DEFAULT_DISK_GB = 50
POWER_ATTEMPTS = 3
# The record's change is done when its labels show it; False: when its operation says so
# (a replayed session: its CAs, so its labels, differ from the recording's).
RECORD_BY_EFFECT = True
# Addresses no network routes (RFC 5737 TEST-NET-2/3; RFC 3849): the simulator's instances.
_UNROUTED = tuple(
    ipaddress.ip_network(n) for n in ("198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)


_MACHINE_NAME = re.compile(rf".+-({'|'.join(ROLES)})-[0-9]+")


def _unrouted(address: str | None) -> bool:
    if not address:
        return False
    ip = ipaddress.ip_address(address)
    return any(ip.version == net.version and ip in net for net in _UNROUTED)


def rule_marker(cluster: str) -> str:
    """The description of every rule stackfleet makes: rules have no labels on exoscale."""
    return f"{CLUSTER_TAG}={cluster}"


def _status(exc: CloudError) -> int:
    return exc.code or 0


class ExoscaleProvisioner(Provisioner):
    userdata_rule = userdata.RULE
    group_tags = False  # security groups have no labels: found by name

    def __init__(
        self,
        api: ExoscaleAPI,
        concurrency: int = 8,
        timeout_s: float = 1800,
        on_progress: Progress | None = None,
        simulated: bool = False,
        **pacing: Any,
    ) -> None:
        self.api = api
        self.timeout_s = timeout_s
        self.ops = ExoscaleOperations(api, concurrency, on_progress, **pacing)
        # The embedded simulator: its instances run nothing, never dial them.
        self._simulated = simulated
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="exo-api")
        # Labels per instance id as last read or written (update-instance replaces them all).
        self._labels: dict[str, dict[str, str]] = {}
        self._names: dict[str, str] = {}  # instance id -> name, for messages
        # User-data set but not sent yet: it goes with the next label change (see _relabel).
        self._unsent_userdata: dict[str, str] = {}
        # Operations deploys must wait for (groups, the key, the anti-affinity group).
        self._gates: list[str] = []
        # Names -> ids of security and anti-affinity groups, as created or listed.
        self._group_ids: dict[str, str] = {}
        self._spread_ids: dict[str, str] = {}
        # Failures found after the fact, raised by settle().
        self._failures: list[CloudError] = []
        # Background operations whose failure settle() reports (the rest only finish).
        self._checked: set[str] = set()
        self._catalog: dict[str, str] = {}  # template / instance-type id -> name

    @property
    def operations(self) -> OperationRunner:
        return self.ops

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self.ops.close()

    def _each(self, fn: Callable[[Any], T], items: Iterable[Any]) -> list[T]:
        """One call per item, sent together (bounded): exoscale has no batch calls. Errors
        come once all have ended (all_ended): a read must not outlive its failed command."""
        items = list(items)
        if len(items) <= 1:
            return [fn(i) for i in items]
        return all_ended(self._pool, [functools.partial(fn, i) for i in items])

    def _background(
        self,
        op: Mapping[str, Any],
        what: str,
        check: bool = True,
        effect: tuple[str, Callable[[Listing], bool]] | None = None,
    ) -> str:
        """Started, not waited for: settle() waits (by `effect` where one is given)."""
        op_id = str(op["id"])
        if effect is not None:
            self.ops.expect(op_id, *effect)
        with self._lock:
            self.ops.background[op_id] = what
            if check:
                self._checked.add(op_id)
        return op_id

    # --- lookups ----------------------------------------------------------------
    def find_zone(self, name_or_id: str) -> Zone:
        return lookups.find_zone(self.api, name_or_id)

    def find_image(self, zone: Zone, name_or_id: str, field: str = "template") -> Image:
        image = lookups.find_image(self.api, name_or_id, field)
        self._catalog[image.id] = image.name
        return image

    def find_size(self, zone: Zone, name_or_id: str, field: str = "offering") -> Size:
        size = lookups.find_size(self.api, name_or_id, field)
        self._catalog[size.id] = size.name
        return size

    def machine_headroom(self) -> int | None:
        # exoscale's quotas (get-quota) are per organization and change on request; the
        # create call's own refusal names the quota when one is hit.
        return None

    def key_fingerprint(self, public_openssh: str) -> str:
        """exoscale's: MD5 of the key blob, hex pairs joined by colons."""
        blob = base64.b64decode(public_openssh.split()[1])
        digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
        return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))

    # --- reading machines ---------------------------------------------------------
    def _instances(self, selector: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        answer = (
            self.api.call("list_instances", labels=labels.selector(selector))
            if selector
            else self.api.call("list_instances")
        )
        found: list[dict[str, Any]] = answer.get("instances", [])
        with self._lock:
            for inst in found:
                self._labels[inst["id"]] = dict(inst.get("labels") or {})
                self._names[inst["id"]] = inst["name"]
        return found

    def _name_of(self, ref: Mapping[str, Any] | None, kind: str) -> str:
        """A template's or instance type's name: the listing's, else the catalog's."""
        if not ref:
            return ""
        if kind == "template" and ref.get("name"):
            return str(ref["name"])
        if kind == "instance-type" and ref.get("size"):
            return f"{ref.get('family', 'standard')}.{ref['size']}"
        if ref.get("id") and ref["id"] not in self._catalog:
            self._load_catalog()
        return self._catalog.get(str(ref.get("id")), "")

    def _load_catalog(self) -> None:
        for kind in self.api.catalog("list_instance_types").get("instance-types", []):
            self._catalog[kind["id"]] = f"{kind['family']}.{kind['size']}"
        for template in self.api.catalog("list_templates", visibility="public").get(
            "templates", []
        ):
            self._catalog[template["id"]] = template["name"]

    def _machine(self, inst: Mapping[str, Any], role: str | None = None) -> Machine:
        tags = labels.to_tags(inst.get("labels") or {})
        ip = inst.get("public-ip")
        return Machine(
            id=inst["id"],
            name=inst["name"],
            role=role or tags.get(ROLE_TAG) or self._role_from_name(inst["name"]),
            state=STATES.get(inst.get("state", ""), MachineState.UNKNOWN),
            cloud_state=inst.get("state", ""),
            # exoscale's security groups (group-to-group rules included) act on the public
            # interface: peers reach each other at their public address.
            private_ip=ip,
            public_ip=ip,
            tags=tags,
            simulated=self._simulated or _unrouted(ip) or _unrouted(inst.get("ipv6-address")),
            offering_id=str((inst.get("instance-type") or {}).get("id", "")),
            offering=self._name_of(inst.get("instance-type"), "instance-type"),
            template_id=str((inst.get("template") or {}).get("id", "")),
            template=self._name_of(inst.get("template"), "template"),
        )

    @staticmethod
    def _role_from_name(name: str) -> str:
        """`<cluster>-<role>-<n>` (a label always comes with an instance; this is for
        instances someone renamed or made by hand)."""
        found = _MACHINE_NAME.fullmatch(name)
        return found.group(1) if found else "unknown"

    def machines_named(self, names: Sequence[str]) -> list[Machine]:
        wanted = set(names)
        return [self._machine(i) for i in self._instances() if i["name"] in wanted]

    def machines_by_id(self, ids: Sequence[str]) -> list[Machine]:
        if not ids:
            return []
        wanted = set(ids)
        return [self._machine(i) for i in self._instances() if i["id"] in wanted]

    def _locate(self, cluster: str) -> None:
        """With no zone given (`status --cluster`, `down --expired`) and one endpoint per
        zone: find the zone that holds the cluster's instances or record, and stay there."""
        if self.api.zone_pinned:
            return
        selector = labels.selector({labels.label(CLUSTER_TAG): cluster})
        for zone in lookups.zone_names(self.api):
            there = self.api.in_zone(zone)
            if there.call("list_instances", labels=selector).get("instances") or record.find(
                there, cluster
            ):
                self.api.use_zone(zone)
                return
        self.api.zone_pinned = True  # nowhere: an empty cluster in the account's zone

    def live_state(self, cluster: str) -> LiveState:
        self._locate(cluster)
        # The five reads at once: one round trip instead of five.
        instances, listed_groups, listed_keys, listed_spread, cluster_record = self._each(
            lambda read: read(),
            [
                lambda: self._instances({labels.label(CLUSTER_TAG): cluster}),
                lambda: self.api.call("list_security_groups").get("security-groups", []),
                lambda: self.api.call("list_ssh_keys").get("ssh-keys", []),
                lambda: self.api.call("list_anti_affinity_groups").get("anti-affinity-groups", []),
                lambda: record.find(self.api, cluster),
            ],
        )
        groups = []
        for sg in listed_groups:
            if naming.role_from_group_name(cluster, sg["name"]) is None:
                continue
            self._group_ids[sg["name"]] = sg["id"]
            rules = tuple(
                ManagedRule(
                    id=r["id"],
                    rule=_to_rule(r),
                    managed=r.get("description") == rule_marker(cluster),
                )
                for r in sg.get("rules", [])
                if r.get("flow-direction") == "ingress"
            )
            groups.append(Group(id=sg["id"], name=sg["name"], rules=rules))
        key = naming.key_name(cluster)
        keys = [
            SSHKey(name=k["name"], fingerprint=k.get("fingerprint", ""))
            for k in listed_keys
            if k["name"] == key
        ]
        spread_name = naming.spread_group_name(cluster)
        spread = []
        for aag in listed_spread:
            if aag["name"] == spread_name:
                self._spread_ids[aag["name"]] = aag["id"]
                spread.append(SpreadGroup(id=aag["id"], name=aag["name"]))
        tags = record.merged(cluster_record)
        return LiveState(
            cluster=cluster,
            machines=[self._machine(i) for i in instances],
            groups=groups,
            keys=keys,
            spread_groups=spread,
            tags=tags,
        )

    def list_clusters(self) -> list[ClusterSummary]:
        """Every cluster with a record or instances: one listing of each."""
        key = labels.label(CLUSTER_TAG)
        counts: dict[str, int] = {}
        records: dict[str, list[record.Record]] = {}
        # Every zone, unless the zone is known (or one endpoint serves them all).
        zones = [] if self.api.zone_pinned else lookups.zone_names(self.api)
        for api in [self.api.in_zone(z) for z in zones] or [self.api]:
            for inst in api.call("list_instances", labels=key).get("instances", []):
                found = (inst.get("labels") or {}).get(key)
                if found:
                    counts[found] = counts.get(found, 0) + 1
            for r in record.all_records(api):
                records.setdefault(r.cluster, []).append(r)
        return [
            ClusterSummary(
                name, counts.get(name, 0), record.merged(records.get(name, [])).get(EXPIRES_TAG)
            )
            for name in sorted(set(counts) | set(records))
        ]

    # --- keys, groups, rules ----------------------------------------------------------
    def import_ssh_key(self, name: str, public_key: str) -> SSHKey:
        def existing() -> dict[str, Any] | None:
            found = self._ssh_key(name)
            return {"id": already_done(name)} if found else None

        try:
            op = self.api.call(
                "register_ssh_key", find_existing=existing, name=name, public_key=public_key
            )
            shows = ("ssh-key", lambda keys: name in keys)
            self._gates.append(self._background(op, f"SSH key {name}", effect=shows))
        except CloudError as exc:
            if _status(exc) != 409:
                raise
        found = self._ssh_key(name)
        if found is None:
            raise CloudError(f"exoscale: SSH key {name} is not listed after registering it")
        return found

    def _ssh_key(self, name: str) -> SSHKey | None:
        try:
            k = self.api.call("get_ssh_key", name=name)
        except CloudError as exc:
            if _status(exc) == 404:
                return None
            raise
        return SSHKey(name=k["name"], fingerprint=k.get("fingerprint", ""))

    def _find_group(self, name: str) -> dict[str, Any] | None:
        groups = self.api.call("list_security_groups").get("security-groups", [])
        found = next((g for g in groups if g["name"] == name), None)
        if found is not None:
            self._group_ids[name] = found["id"]
        return found

    def create_group(self, name: str, description: str, tags: Mapping[str, str]) -> Group:
        def existing() -> dict[str, Any] | None:
            found = self._find_group(name)
            return {"id": already_done(found["id"]), "reference": found} if found else None

        try:
            op = self.api.call(
                "create_security_group",
                find_existing=existing,
                name=name,
                description=description[:255],
            )
        except CloudError as exc:
            found = self._find_group(name) if _status(exc) == 409 else None
            if found is None:
                raise
            return Group(id=found["id"], name=name)
        group_id = reference_id(op, f"security group {name}")
        self._group_ids[name] = group_id
        shows = ("security-group", lambda groups: group_id in groups)
        self._gates.append(self._background(op, f"security group {name}", effect=shows))
        return Group(id=group_id, name=name)

    def _group_id(self, name: str) -> str:
        if name not in self._group_ids and self._find_group(name) is None:
            raise CloudError(f"exoscale: security group {name} does not exist")
        return self._group_ids[name]

    def change_rules(
        self,
        additions: Mapping[str, Sequence[Rule]],
        removals: Sequence[str],
        adopt: Sequence[str],
        tags: Mapping[str, str],
    ) -> None:
        """Rules are made with their description in one call, so an unmarked rule was made
        by someone else; adopting one replaces it with a marked copy (delete, then add)."""
        cluster = tags.get(CLUSTER_TAG, "")
        marker = rule_marker(cluster)
        groups = self.api.call("list_security_groups").get("security-groups", [])
        owner: dict[str, tuple[str, dict[str, Any]]] = {}
        for sg in groups:
            self._group_ids[sg["name"]] = sg["id"]
            for r in sg.get("rules", []):
                owner[r["id"]] = (sg["id"], r)
        deletes = [owner[r] for r in [*removals, *adopt] if r in owner]
        adds = [(self._group_id(g), rule) for g, rules in additions.items() for rule in rules]
        adds += [(gid, _to_rule(r)) for gid, r in (owner[a] for a in adopt if a in owner)]

        def delete(item: tuple[str, dict[str, Any]]) -> None:
            gid, rule = item
            try:
                op = self.api.call("delete_rule_from_security_group", id=gid, rule_id=rule["id"])
            except CloudError as exc:
                if _status(exc) != 404:  # gone already: done
                    raise
                return
            self._background(
                op, f"revoking {_to_rule(rule).describe()}", effect=_rule_gone(gid, rule["id"])
            )

        def add(item: tuple[str, Rule]) -> None:
            gid, rule = item
            body: dict[str, Any] = {
                "flow_direction": "ingress",
                "protocol": rule.protocol,
                "start_port": rule.start_port,
                "end_port": rule.end_port,
                "description": marker,
            }
            if rule.source_group:
                body["security_group"] = {"id": self._group_id(rule.source_group)}
            else:
                body["network"] = rule.cidr
            try:
                op = self.api.call("add_rule_to_security_group", id=gid, **body)
            except CloudError as exc:
                if _status(exc) != 409:  # the same rule exists: a repeat after a lost answer
                    raise
                return
            self._background(op, f"rule {rule.describe()}", effect=_rule_shown(gid, rule, marker))

        self._each(delete, deletes)
        self._each(add, adds)

    def create_spread_group(self, name: str) -> SpreadGroup:
        def existing() -> dict[str, Any] | None:
            found = self._find_spread(name)
            return {"id": already_done(found), "reference": {"id": found}} if found else None

        try:
            op = self.api.call(
                "create_anti_affinity_group",
                find_existing=existing,
                name=name,
                description="stackfleet: etcd members on different hosts",
            )
        except CloudError as exc:
            found = self._find_spread(name) if _status(exc) == 409 else None
            if found is None:
                raise
            return SpreadGroup(id=found, name=name)
        group_id = reference_id(op, f"anti-affinity group {name}")
        self._spread_ids[name] = group_id
        shows = ("anti-affinity-group", lambda groups: group_id in groups)
        self._gates.append(self._background(op, f"anti-affinity group {name}", effect=shows))
        return SpreadGroup(id=group_id, name=name)

    def _find_spread(self, name: str) -> str | None:
        groups = self.api.call("list_anti_affinity_groups").get("anti-affinity-groups", [])
        found = next((g["id"] for g in groups if g["name"] == name), None)
        if found is not None:
            self._spread_ids[name] = found
        return found

    # --- labels -------------------------------------------------------------------
    def _relabel(
        self,
        ids: Sequence[str],
        change: Callable[[dict[str, str]], dict[str, str]],
        what: str,
        check: bool,
    ) -> None:
        """update-instance replaces all labels: change each instance's known labels. User-data
        written but not yet sent goes in the same call (one operation, and the labels never
        land before it); those calls are waited for, as a start must boot the new user-data."""
        unknown = [i for i in ids if i not in self._labels]
        if unknown:
            self._instances()

        def one(instance_id: str) -> tuple[str, str] | None:
            with self._lock:
                current = self._labels.get(instance_id)
                encoded = self._unsent_userdata.pop(instance_id, None)
                if current is None:
                    return None  # gone
                wanted = change(dict(current))
                if wanted == current and encoded is None:
                    return None
                self._labels[instance_id] = wanted
            body: dict[str, Any] = {"labels": wanted}
            if encoded is not None:
                body["user_data"] = encoded
            op = self._update(instance_id, body)
            if encoded is not None:
                return instance_id, str(op["id"])

            def shows(instances: Listing) -> bool:
                listed = instances.get(instance_id)
                return listed is None or listed.get("labels") == wanted

            self._background(op, f"{what} on {instance_id}", check, ("instance", shows))
            return None

        with_userdata = [found for found in self._each(one, ids) if found is not None]
        if with_userdata:
            self.ops.wait(
                dict(with_userdata), self.timeout_s, f"user-data of {len(with_userdata)} machines"
            )

    def _update(self, instance_id: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.api.call("update_instance", id=instance_id, **body)
        except CloudError as exc:
            refused = _userdata_refused(exc, self._names.get(instance_id, instance_id), body)
            raise refused or exc from None

    def tag_machines(
        self,
        ids: Sequence[str],
        tags: Mapping[str, str],
        verify: bool = True,
        replacing: Collection[str] = (),
    ) -> None:
        # Labels are one map, written whole: a key's new value simply replaces the old.
        new = labels.to_labels(tags)
        self._relabel(ids, lambda current: {**current, **new}, "labels", verify)

    def set_cluster_tags(self, cluster: str, tags: Mapping[str, str | None]) -> None:
        written = record.write(self.api, cluster, tags)
        if written is None:
            return
        op, wanted = written
        if not RECORD_BY_EFFECT:
            self._background(op, f"the record of cluster {cluster}")
            return
        record_id = reference_id(op, f"the record of cluster {cluster}")

        def shows(networks: Listing) -> bool:
            return (networks.get(record_id) or {}).get("labels") == wanted

        self._background(op, f"the record of cluster {cluster}", effect=("private-network", shows))

    # --- machines: the engine's create pipeline runs on these -------------------------
    def begin_deploy(self, request: MachineRequest) -> str:
        body: dict[str, Any] = {
            "name": request.name,
            "template": {"id": request.image_id},
            "instance_type": {"id": request.size_id},
            "disk_size": request.disk_gb or DEFAULT_DISK_GB,
            "security_groups": [{"id": self._group_id(g)} for g in request.group_names],
            "ssh_keys": [{"name": request.key_name}],
            # Labels come with the instance: it is never listed without them.
            "labels": labels.to_labels(request.tags),
            "auto_start": request.start,
            "public_ip_assignment": "inet4",
        }
        if request.userdata:
            body["user_data"] = userdata.encode(request.userdata)
            if len(body["user_data"]) > userdata.api_limit():
                raise _too_large(request.name, len(body["user_data"]))
        if request.spread_group:
            spread_id = self._spread_ids.get(request.spread_group) or self._find_spread(
                request.spread_group
            )
            if spread_id is None:
                raise CloudError(f"exoscale: anti-affinity group {request.spread_group} is gone")
            body["anti_affinity_groups"] = [{"id": spread_id}]

        def existing() -> dict[str, Any] | None:
            # The create may have gone through: adopt the instance, do not make a second.
            found = [i for i in self._instances() if i["name"] == request.name]
            return {"id": already_done(found[0]["id"])} if found else None

        try:
            op = self.api.call("create_instance", find_existing=existing, **body)
        except CloudError as exc:
            raise _userdata_refused(exc, request.name, body) or exc from None
        return str(op["id"])

    def deploy_gate(self, request: MachineRequest) -> tuple[str, ...]:
        # Deploys name the groups, the key and the anti-affinity group: made, not pending.
        return tuple(self._gates)

    def begin_start(self, machine_id: str) -> str:
        with self._lock:
            unsent = self._unsent_userdata.pop(machine_id, None)
        if unsent is not None:  # no label call carried it: send it, and wait, first
            op = self._update(machine_id, {"user_data": unsent})
            self._wait_one(str(op["id"]), f"user-data of {self._names.get(machine_id, machine_id)}")
        return self._power_op("start_instance", machine_id)

    def _wait_one(self, op_id: str, what: str) -> None:
        """One operation, polled in this thread (begin_* run on the pipeline's threads)."""
        deadline = time.monotonic() + self.timeout_s
        delay = 0.05
        while True:
            op = self.api.call("get_operation", id=op_id)
            if op.get("state") != "pending":
                if op.get("state") != "success":
                    raise CloudError(f"exoscale: {what}: {op.get('state')}: {op.get('reason')}")
                return
            if time.monotonic() > deadline:
                raise WaitTimeout(f"gave up after {self.timeout_s:.0f} s waiting for {what}")
            time.sleep(delay)
            delay = min(delay * 1.6, 1.0)

    def _power_op(self, method: str, machine_id: str) -> str:
        try:
            op_id = str(self.api.call(method, id=machine_id)["id"])
        except CloudError as exc:
            if _status(exc) != 409:  # already in that state (or on its way): nothing to do
                raise
            return already_done(machine_id)
        # Done when listed in the state it was sent to: one listing for every instance.
        want = "running" if method == "start_instance" else "stopped"
        self.ops.expect(
            op_id, "instance", lambda listed: listed.get(machine_id, {}).get("state") == want
        )
        return op_id

    def _destroyer(self, machine_id: str) -> Callable[[], str]:
        return lambda: self.begin_destroy(machine_id)

    def begin_destroy(self, machine_id: str) -> str:
        try:
            op = self.api.call("delete_instance", id=machine_id)
        except CloudError as exc:
            if _status(exc) not in (404, 409):  # gone, or being destroyed already
                raise
            return already_done(machine_id)
        with self._lock:
            self._labels.pop(machine_id, None)
        # Done when it is no longer listed: one listing answers for every instance.
        self.ops.expect(str(op["id"]), "instance", lambda listed: machine_id not in listed)
        return str(op["id"])

    def operation_failure(self, op_id: str | None) -> str:
        return self.ops.failure(op_id) or "instance not in the expected state"

    def set_userdata(self, userdata_by_id: Mapping[str, str]) -> None:
        """Kept until the next call on those instances: labels (then one update-instance
        carries both), a start, or settle(). Too large for the API: refused here, now."""
        limit = userdata.api_limit()
        for instance_id, text in userdata_by_id.items():
            encoded = userdata.encode(text)
            if len(encoded) > limit:
                name = self._names.get(instance_id, instance_id)
                raise _too_large(name, len(encoded))
            with self._lock:
                self._unsent_userdata[instance_id] = encoded

    def _send_userdata(self, ids: Iterable[str] | None = None) -> None:
        """Send (and wait for) user-data kept by set_userdata."""
        with self._lock:
            chosen = list(self._unsent_userdata) if ids is None else list(ids)
            todo = {i: self._unsent_userdata.pop(i) for i in chosen if i in self._unsent_userdata}
        if not todo:
            return

        def write(item: tuple[str, str]) -> tuple[str, str]:
            instance_id, encoded = item
            return instance_id, str(self._update(instance_id, {"user_data": encoded})["id"])

        ops = dict(self._each(write, list(todo.items())))
        self.ops.wait(ops, self.timeout_s, f"user-data of {len(ops)} machines")

    def _power(
        self, method: str, ids: Sequence[str], want: MachineState, verb: str
    ) -> list[Machine]:
        """Start or stop, and again for those that did not get there: both are idempotent."""
        if not ids:
            return []
        self._send_userdata(ids)
        todo: list[str] = list(ids)
        reasons: dict[str, str] = {}
        by_id: dict[str, Machine] = {}
        for _ in range(POWER_ATTEMPTS):
            ops = dict(
                zip(todo, self._each(lambda i: self._power_op(method, i), todo), strict=True)
            )
            self.ops.run(
                [submitted(k, v) for k, v in ops.items()],
                self.timeout_s,
                f"{len(todo)} machines to {verb}",
                machines=True,
            )
            by_id = {m.id: m for m in self.machines_by_id(ids)}
            todo = [i for i in ids if getattr(by_id.get(i), "state", None) != want]
            if not todo:
                return [by_id[i] for i in ids]
            reasons = {i: self.operation_failure(ops.get(i)) for i in todo}
        listed = "; ".join(
            f"{getattr(by_id.get(i), 'name', i)}: {reasons.get(i, '')}" for i in sorted(todo)[:3]
        )
        raise CloudError(f"{len(ids)} machines to {verb}: {listed}")

    def start_machines(self, ids: Sequence[str]) -> list[Machine]:
        return self._power("start_instance", ids, MachineState.RUNNING, "start")

    def stop_machines(self, ids: Sequence[str]) -> list[Machine]:
        return self._power("stop_instance", ids, MachineState.STOPPED, "stop")

    def destroy_machines(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        ops = dict(zip(ids, self._each(self.begin_destroy, ids), strict=True))
        self.ops.run(
            [submitted(k, v) for k, v in ops.items()],
            self.timeout_s,
            f"{len(ids)} machines to destroy",
            machines=True,
        )
        left = self.machines_by_id(ids)
        if left:
            raise CloudError(
                f"{len(left)} instance(s) still exist after delete: "
                + ", ".join(m.name for m in left)
            )

    def delete_ssh_key(self, name: str) -> None:
        try:
            op = self.api.call("delete_ssh_key", name=name)
        except CloudError as exc:
            if _status(exc) != 404:
                raise
            return
        self._background(
            op, f"deleting SSH key {name}", effect=("ssh-key", lambda k: name not in k)
        )

    def teardown(self, live: LiveState, on_phase: Callable[[str], None]) -> None:
        """Instances, group-to-group rules and the key go at once; then, with nothing using
        or naming them, the security groups and the anti-affinity group (exoscale refuses
        to delete a group an instance is in; the simulator also one another group's rule
        names, as a careful cloud would)."""
        group_rules = [
            (g.id, r.id) for g in live.groups for r in g.rules if r.rule.source_group is not None
        ]
        on_phase(
            f"destroying {len(live.machines)} instance(s), revoking {len(group_rules)} "
            "group rule(s)"
        )
        for key in live.keys:
            self.delete_ssh_key(key.name)

        def revoke(item: tuple[str, str]) -> str | None:
            gid, rid = item
            try:
                op = self.api.call("delete_rule_from_security_group", id=gid, rule_id=rid)
            except CloudError as exc:
                if _status(exc) != 404:
                    raise
                return None
            self.ops.expect(str(op["id"]), *_rule_gone(gid, rid))
            return str(op["id"])

        names = {m.name for m in live.machines}
        pipe = self.ops.pipeline(
            self.timeout_s,
            f"{len(names)} machines to destroy, {len(group_rules)} rules to revoke",
            count=MachineCount.of_keys(f"{len(names)} machines to destroy", names),
        )
        for m in live.machines:  # at most `concurrency` deletes in flight
            pipe.add(Task(m.name, self._destroyer(m.id)))
        for revoke_op in self._each(revoke, group_rules):
            if revoke_op is not None:
                pipe.add(Task(f"rule {revoke_op}", _started(revoke_op), lane="rules"))
        pipe.run()
        left = self.machines_by_id([m.id for m in live.machines])
        if left:
            raise CloudError(
                f"{len(left)} instance(s) still exist after delete: "
                + ", ".join(m.name for m in left)
            )
        if live.groups or live.spread_groups:
            on_phase(
                f"deleting {len(live.groups)} security group(s) and "
                f"{len(live.spread_groups)} anti-affinity group(s)"
            )

        def delete(item: tuple[str, str, str]) -> str | None:
            method, kind, resource_id = item
            try:
                op = self.api.call(method, id=resource_id)
            except CloudError as exc:
                if _status(exc) != 404:
                    raise
                return None
            self.ops.expect(str(op["id"]), kind, lambda listed: resource_id not in listed)
            return str(op["id"])

        deletes = [("delete_security_group", "security-group", g.id) for g in live.groups]
        deletes += [
            ("delete_anti_affinity_group", "anti-affinity-group", s.id)
            for s in live.spread_groups
            if s.id
        ]
        # The record with the groups, after the instances: a `down` stopped before still
        # finds the expiry (a janitor run retries it).
        deletes += [
            ("delete_private_network", "private-network", r.id)
            for r in record.find(self.api, live.cluster)
        ]
        group_ops = [op for op in self._each(delete, deletes) if op]
        if group_ops:
            self.ops.run(
                [submitted(op, op) for op in group_ops], self.timeout_s, "groups to delete"
            )
        self.settle()

    def settle(self) -> None:
        self._send_userdata()
        with self._lock:
            todo, self.ops.background = dict(self.ops.background), {}
            checked, self._checked = self._checked, set()
        if todo:
            self.ops.run(
                [submitted(what, op) for op, what in todo.items()],
                self.timeout_s,
                f"{len(todo)} changes to finish",
            )
        self._gates = [g for g in self._gates if g not in self.ops.finished]
        for op_id in sorted(checked & set(todo)):
            why = self.ops.failure(op_id)
            if why is not None:
                self._failures.append(CloudError(f"exoscale: {todo[op_id]}: {why}"))
        if self._failures:
            first, self._failures = self._failures[0], []
            raise first

    # --- the lock: a security group, because exoscale refuses a second of one name ----
    def take_lock(self, cluster: str, holder: str) -> str | None:
        name = naming.lock_name(cluster)
        try:
            self.api.call(
                "create_security_group",
                find_existing=lambda: self._lock_answer(name),
                name=name,
                description=holder,
            )
        except CloudError as exc:
            if _status(exc) != 409:
                raise
        found = self._find_group(name)
        if found is None:  # released in between: try once more
            return self.take_lock(cluster, holder)
        record = found.get("description") or "unknown:0:0"
        return None if record == holder else str(record)

    def _lock_answer(self, name: str) -> dict[str, Any] | None:
        found = self._find_group(name)
        return {"id": already_done(found["id"])} if found else None

    def release_lock(self, cluster: str, holder: str | None) -> None:
        found = self._find_group(naming.lock_name(cluster))
        if found is None or (holder is not None and found.get("description") != holder):
            return
        try:
            self.api.call("delete_security_group", id=found["id"])
        except CloudError as exc:
            if _status(exc) != 404:
                raise
        self._group_ids.pop(found["name"], None)


def _started(op_id: str) -> Callable[[], str]:
    """A Task's submit for an operation already started."""
    return lambda: op_id


def _rule_shown(group_id: str, rule: Rule, marker: str) -> tuple[str, Callable[[Listing], bool]]:
    def shows(groups: Listing) -> bool:
        listed = (groups.get(group_id) or {}).get("rules", [])
        return any(_to_rule(r) == rule and r.get("description") == marker for r in listed)

    return ("security-group", shows)


def _rule_gone(group_id: str, rule_id: str) -> tuple[str, Callable[[Listing], bool]]:
    def shows(groups: Listing) -> bool:
        listed = (groups.get(group_id) or {}).get("rules", [])
        return all(r["id"] != rule_id for r in listed)

    return ("security-group", shows)


def _to_rule(r: Mapping[str, Any]) -> Rule:
    source = r.get("security-group") or {}
    return Rule(
        protocol=str(r.get("protocol", "")),
        start_port=int(r.get("start-port", 0)),
        end_port=int(r.get("end-port", 0)),
        cidr=r.get("network") or None,
        source_group=source.get("name") or None,
    )


def _too_large(node: str, size: int) -> LimitExceeded:
    return LimitExceeded(
        f"exoscale refuses the user-data of {node}: {size} base64 characters, the API accepts "
        f"at most {userdata.api_limit()}; `stackfleet validate` names every node over it"
    )


def _userdata_refused(exc: CloudError, node: str, body: Mapping[str, Any]) -> LimitExceeded | None:
    """The API refused the user-data's size (400 naming `user-data`): say so in one line."""
    if _status(exc) != 400 or "user-data" not in str(exc):
        return None
    return _too_large(node, len(body.get("user_data", "")))
