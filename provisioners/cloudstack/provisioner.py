"""The CloudStack implementation of the Provisioner interface.

Reads are plain list calls; slow mutations are async jobs run through JobRunner, which
polls them together. After a batch, one list call shows every resource's state, and
only the jobs whose resource looks wrong are asked for their error. CloudStack's VM
states map to the engine's MachineState here (STATES), and `teardown` orders deletions
around CloudStack's rules about groups (see its docstring).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import partial
from typing import Any

from stackfleet.errors import CloudError, JobFailed, LimitExceeded
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
    Progress,
    Provisioner,
    Size,
    SpreadGroup,
    SSHKey,
    Zone,
)
from stackfleet.provisioners.cloudstack import lookups
from stackfleet.provisioners.cloudstack import userdata as cs_userdata
from stackfleet.provisioners.cloudstack.connection import CloudStackAPI
from stackfleet.provisioners.cloudstack.jobs import JobRunner
from stackfleet.provisioners.operations import (
    MachineCount,
    OperationRunner,
    Pipeline,
    Submission,
    Task,
    already_done,
    is_already_done,
)
from stackfleet.roles import ETCD
from stackfleet.security_groups.rules import Rule

log = logging.getLogger("stackfleet.cloudstack")
# Start and stop are retried this often when their job fails (530 and the like).
POWER_ATTEMPTS = 3
# Rule revokes sent ahead per security group (the cloud runs them one after another).
RULES_AHEAD_PER_GROUP = 2


def _tags(item: Mapping[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in item.get("tags", []) or []}


def _tag_params(tags: Mapping[str, str | None]) -> dict[str, str]:
    """CloudStack's tags[n].key/value; a None value is left out (deleteTags: any value)."""
    params = {}
    for i, (key, value) in enumerate(sorted(tags.items())):
        params[f"tags[{i}].key"] = key
        if value is not None:
            params[f"tags[{i}].value"] = value
    return params


# Our simulator's QEMU guests name the network namespace their address lives in.
NETNS_DETAIL = "stackfleet:netns"

# CloudStack's VM states (VirtualMachine.State), in the engine's words.
STATES = {
    "Starting": MachineState.STARTING,
    "Running": MachineState.RUNNING,
    "Stopping": MachineState.STOPPING,
    "Stopped": MachineState.STOPPED,
    "Migrating": MachineState.MIGRATING,
    "Restoring": MachineState.MIGRATING,
    "Error": MachineState.ERROR,
    "Unknown": MachineState.UNKNOWN,
    "Shutdowned": MachineState.STOPPED,
    "Destroyed": MachineState.GONE,
    "Expunging": MachineState.GONE,
}


def _to_machine(vm: Mapping[str, Any], role: str) -> Machine:
    nics = vm.get("nic") or []
    ip = next((n.get("ipaddress") for n in nics if n.get("ipaddress")), None)
    return Machine(
        id=vm["id"],
        name=vm["name"],
        role=role,
        state=STATES.get(vm.get("state", ""), MachineState.UNKNOWN),
        cloud_state=vm.get("state", ""),
        private_ip=ip,
        public_ip=vm.get("publicip"),
        tags=_tags(vm),
        # CloudStack's own simulator (and ours) reports this for VMs that run nothing.
        simulated=vm.get("hypervisor") == "Simulator",
        netns=(vm.get("details") or {}).get(NETNS_DETAIL),
        offering_id=vm.get("serviceofferingid") or "",
        offering=vm.get("serviceofferingname") or "",
        template_id=vm.get("templateid") or "",
        template=vm.get("templatename") or "",
    )


def _gone(exc: CloudError) -> bool:
    """CloudStack's answer to deleting something that no longer exists (431, "not found")."""
    return exc.code == 431 and "not" in str(exc).lower()


# CloudStack's refusal of userdata over vm.userdata.max.length (431), with that setting.
_USERDATA_TOO_LONG = re.compile(r"exceeded configurable max length\s*:\s*(\d+)", re.IGNORECASE)


def _userdata_refused(exc: CloudError, node: str, encoded: str) -> LimitExceeded | None:
    """The cloud's limit is below the spec's: one line saying so, and what to set."""
    found = _USERDATA_TOO_LONG.search(str(exc))
    if exc.code != 431 or found is None:
        return None
    limit = found.group(1)
    return LimitExceeded(
        f"the cloud refused the userdata of {node} ({len(encoded)} base64 characters): its "
        f"limit (vm.userdata.max.length) is {limit}; set cloud.userdata_limit: {limit} in the "
        "spec, then `stackfleet validate` names every node over it"
    )


def _to_rule(r: Mapping[str, Any]) -> Rule:
    return Rule(
        protocol=str(r.get("protocol", "")).lower(),
        start_port=int(r.get("startport", 0)),
        end_port=int(r.get("endport", 0)),
        cidr=r.get("cidr") or None,
        source_group=r.get("securitygroupname") or None,
    )


class CloudStackProvisioner(Provisioner):
    userdata_rule = cs_userdata.RULE

    def __init__(
        self,
        api: CloudStackAPI,
        concurrency: int = 8,
        timeout_s: float = 1800,
        on_progress: Progress | None = None,
    ) -> None:
        self.api = api
        self.timeout_s = timeout_s
        self.jobs = JobRunner(api, concurrency=concurrency, on_progress=on_progress)
        self._account: str | None = None
        # Role by machine id (and by name, for deploys), from what this run created or
        # read: a role tag may still be in flight (tags are fired without waiting) when a
        # machine is listed again.
        self._roles: dict[str, str] = {}
        self._roles_by_name: dict[str, str] = {}
        # Affinity group ids by machine id, from the last listing (see teardown).
        self._spread_of: dict[str, set[str]] = {}
        # Failures found after the fact (a rule its job did not make), raised by settle().
        self._failures: list[CloudError] = []
        # Affinity group name -> its creation job, which deploys joining it wait for.
        self._spread_jobs: dict[str, str] = {}
        # (cluster, holder) -> id of the lock group this process created.
        self._locks: dict[tuple[str, str], str] = {}

    @property
    def operations(self) -> OperationRunner:
        return self.jobs

    # --- lookups ----------------------------------------------------------------
    def find_zone(self, name_or_id: str) -> Zone:
        return lookups.find_zone(self.api, name_or_id)

    def find_image(self, zone: Zone, name_or_id: str, field: str = "template") -> Image:
        return lookups.find_image(self.api, zone, name_or_id, field)

    def find_size(self, zone: Zone, name_or_id: str, field: str = "offering") -> Size:
        return lookups.find_size(self.api, name_or_id, field)

    def machine_headroom(self) -> int | None:
        return lookups.machine_headroom(self.api)

    def _machines(self, cluster: str, listed: Sequence[Mapping[str, Any]]) -> list[Machine]:
        found = []
        for vm in listed:
            role = naming.role_from_machine_name(cluster, vm["name"])
            if _tags(vm).get(CLUSTER_TAG) == cluster or role:
                machine = _to_machine(vm, _tags(vm).get(ROLE_TAG) or role or "unknown")
                self._roles[machine.id] = machine.role
                # Which affinity groups hold it: `teardown` deletes one once its VMs are gone.
                self._spread_of[machine.id] = {a["id"] for a in vm.get("affinitygroup") or []}
                found.append(machine)
        return found

    def live_state(self, cluster: str) -> LiveState:
        # The four reads at once: one round trip instead of four, and four requests fit
        # well inside a cloud's usual rate limit (25 a second).
        sgs, key_pairs, affinity, vms = self.jobs.concurrently(
            [
                lambda: self.api.list_all(
                    "listSecurityGroups", "securitygroup", {"keyword": cluster}
                ),
                lambda: self.api.list_all(
                    "listSSHKeyPairs", "sshkeypair", {"name": naming.key_name(cluster)}
                ),
                lambda: self.api.list_all(
                    "listAffinityGroups",
                    "affinitygroup",
                    {"name": naming.spread_group_name(cluster)},
                ),
                lambda: self.api.list_all(
                    "listVirtualMachines", "virtualmachine", {"keyword": cluster}
                ),
            ]
        )
        groups = []
        cluster_tags: dict[str, str] = {}
        for sg in sgs:
            role = naming.role_from_group_name(cluster, sg["name"])
            if _tags(sg).get(CLUSTER_TAG) != cluster and not role:
                continue
            self._account = sg.get("account", self._account)
            rules = tuple(
                ManagedRule(
                    id=r["ruleid"], rule=_to_rule(r), managed=_tags(r).get(CLUSTER_TAG) == cluster
                )
                for r in sg.get("ingressrule", []) or []
            )
            groups.append(Group(id=sg["id"], name=sg["name"], rules=rules, tags=_tags(sg)))
            if role == ETCD:
                cluster_tags = _tags(sg)
        keys = [SSHKey(name=k["name"], fingerprint=k.get("fingerprint", "")) for k in key_pairs]
        spread = [SpreadGroup(id=a["id"], name=a["name"]) for a in affinity]
        return LiveState(
            cluster=cluster,
            machines=self._machines(cluster, vms),
            groups=groups,
            keys=keys,
            spread_groups=spread,
            tags=cluster_tags,
        )

    def list_clusters(self) -> list[ClusterSummary]:
        groups = self.api.list_all(
            "listSecurityGroups", "securitygroup", _tag_params({ROLE_TAG: ETCD})
        )
        vms = self.api.list_all("listVirtualMachines", "virtualmachine")
        summaries = []
        for sg in groups:
            tags = _tags(sg)
            name = tags.get(CLUSTER_TAG)
            if not name:
                continue
            count = sum(1 for vm in vms if _tags(vm).get(CLUSTER_TAG) == name)
            summaries.append(ClusterSummary(name, count, tags.get("stackfleet:expires")))
        return sorted(summaries, key=lambda s: s.name)

    def key_fingerprint(self, public_openssh: str) -> str:
        """CloudStack's: MD5 of the key blob, hex pairs joined by colons."""
        blob = base64.b64decode(public_openssh.split()[1])
        digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
        return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))

    # --- keys, groups, rules ----------------------------------------------------
    def import_ssh_key(self, name: str, public_key: str) -> SSHKey:
        def existing() -> dict[str, Any] | None:
            found = self.api.list_all("listSSHKeyPairs", "sshkeypair", {"name": name})
            return {"keypair": found[0]} if found else None

        body = self.api.call(
            "registerSSHKeyPair",
            {"name": name, "publickey": public_key},
            post=True,
            find_existing=existing,
        )
        pair = body.get("keypair", body)
        return SSHKey(name=pair.get("name", name), fingerprint=pair.get("fingerprint", ""))

    def create_group(self, name: str, description: str, tags: Mapping[str, str]) -> Group:
        def existing() -> dict[str, Any] | None:
            # The group may have been created before the connection broke: look first.
            found = self.api.list_all(
                "listSecurityGroups", "securitygroup", {"securitygroupname": name}
            )
            return {"securitygroup": found[0]} if found else None

        body = self.api.call(
            "createSecurityGroup",
            {"name": name, "description": description},
            find_existing=existing,
        )
        sg = body.get("securitygroup", body)
        self._account = sg.get("account", self._account)
        self._tag("SecurityGroup", [sg["id"]], tags)
        return Group(id=sg["id"], name=sg["name"], tags=dict(tags))

    def tag_group(
        self, group_id: str, tags: Mapping[str, str], replacing: Collection[str] = ()
    ) -> None:
        self._tag("SecurityGroup", [group_id], tags, replacing=replacing)

    def change_rules(
        self,
        additions: Mapping[str, Sequence[Rule]],
        removals: Sequence[str],
        adopt: Sequence[str],
        tags: Mapping[str, str],
    ) -> None:
        """Fire every change and return: CloudStack runs a group's rule jobs one after
        another, and nothing needs them before the VMs boot. `settle()` waits for them."""
        self._tag("SecurityGroupRule", adopt, tags)
        for group, rules in additions.items():
            jobids = [
                self._fire(self._authorizer(group, r), f"{group}: {r.describe()}", False)
                for r in rules
            ]

            def verify(
                group: str = group,
                rules: tuple[Rule, ...] = tuple(rules),
                jobids: tuple[str, ...] = tuple(jobids),
            ) -> None:
                self._verify_rules(group, rules, jobids, tags)

            self.jobs.when_done(jobids, verify)
        for rule_id in removals:
            self._fire(self._revoker(rule_id), f"revoking rule {rule_id}")

    def _fire(self, submit: Any, what: str, check: bool = True) -> str:
        jobid = str(submit())
        self.jobs.background(jobid, what, check=check)
        return jobid

    def _verify_rules(
        self, group: str, rules: Sequence[Rule], jobids: Sequence[str], tags: Mapping[str, str]
    ) -> None:
        """One listing shows which rules exist; tag the new ones, ask only the others' jobs."""
        listed = self.api.list_all(
            "listSecurityGroups", "securitygroup", {"securitygroupname": group}
        )
        ingress = [r for sg in listed for r in sg.get("ingressrule", []) or []]
        present = {_to_rule(r) for r in ingress}
        self._tag(
            "SecurityGroupRule",
            [r["ruleid"] for r in ingress if not _tags(r) and _to_rule(r) in rules],
            tags,
        )
        for rule, jobid in zip(rules, jobids, strict=True):
            if rule in present:
                continue
            try:
                self.jobs.result(jobid)
                reason = "the cloud reported success but does not list it"
            except JobFailed as exc:
                reason = str(exc)
            self._failures.append(CloudError(f"{group}: {rule.describe()}: {reason}"))

    def settle(self) -> None:
        self.jobs.drain(self.timeout_s)
        if self._failures:
            first, self._failures = self._failures[0], []
            raise first

    def _authorizer(self, group: str, rule: Rule) -> Any:
        params: dict[str, Any] = {
            "securitygroupname": group,
            "protocol": rule.protocol,
            "startport": rule.start_port,
            "endport": rule.end_port,
        }
        if rule.cidr is not None:
            params["cidrlist"] = rule.cidr
        else:
            params["usersecuritygrouplist[0].account"] = self._account_name()
            params["usersecuritygrouplist[0].group"] = rule.source_group
        return lambda: self.api.call("authorizeSecurityGroupIngress", params)["jobid"]

    def _revoker(self, rule_id: str) -> Any:
        return lambda: self.api.call("revokeSecurityGroupIngress", {"id": rule_id})["jobid"]

    def _account_name(self) -> str:
        if self._account is None:
            accounts = self.api.call("listAccounts", {}).get("account", [])
            self._account = accounts[0]["name"] if accounts else ""
        return self._account

    def create_spread_group(self, name: str) -> SpreadGroup:
        """Fired, not waited for: only the deploys that join it wait (a gate)."""

        def existing() -> dict[str, Any] | None:
            found = self.api.list_all("listAffinityGroups", "affinitygroup", {"name": name})
            return {"affinitygroup": found[0]} if found else None

        body = self.api.call(
            "createAffinityGroup",
            {"name": name, "type": "host anti-affinity"},
            find_existing=existing,
        )
        if "jobid" in body:
            self._spread_jobs[name] = str(body["jobid"])
            self.jobs.background(str(body["jobid"]), f"affinity group {name}")
            return SpreadGroup(id="", name=name)
        group = body.get("affinitygroup", body)
        return SpreadGroup(id=group["id"], name=group["name"])

    def _tag(
        self,
        resource_type: str,
        ids: Sequence[str],
        tags: Mapping[str, str],
        check: bool = False,
        replacing: Collection[str] = (),
    ) -> None:
        """Fire createTags without waiting: nothing in a run reads its own tags back (roles
        are remembered, names identify). `set_cluster_tags` for the lock waits for every
        job fired so far in one shared round and reports a failed one with its error.

        CloudStack writes a tag once: createTags over a key the resource has (any value)
        fails, and runs beside a deleteTags fired before it. So the `replacing` keys go
        first, and the new values once that job has ended."""
        if not ids or not tags:
            return
        if replacing:
            gone = self._untag(resource_type, ids, {k: None for k in replacing})
            self.jobs.when_done([gone], lambda: self._tag(resource_type, ids, tags, check))
            return
        body = self.api.call(
            "createTags",
            {"resourcetype": resource_type, "resourceids": ",".join(ids), **_tag_params(tags)},
        )
        # Mostly unchecked: tags are read back (the lock's confirming read; the next run
        # finds an untagged resource by name and adopts it), so no query per tag job. The
        # bootstrap marker is checked: a run must not report a node done that is not.
        self.jobs.background(
            str(body["jobid"]), f"tags on {resource_type} {', '.join(ids)}", check=check
        )

    def _untag(self, resource_type: str, ids: Sequence[str], tags: Mapping[str, str | None]) -> str:
        """Fire deleteTags (a key with None: whatever its value); its job id. Unchecked: the
        createTags after it fails if a key is left, and nothing else depends on it."""
        params = {"resourcetype": resource_type, "resourceids": ",".join(ids), **_tag_params(tags)}
        jobid = str(self.api.call("deleteTags", params)["jobid"])
        self.jobs.background(jobid, f"removing tags from {resource_type} {', '.join(ids)}", False)
        return jobid

    def set_cluster_tags(self, cluster: str, tags: Mapping[str, str | None]) -> None:
        groups = self.api.list_all(
            "listSecurityGroups",
            "securitygroup",
            {"securitygroupname": naming.group_name(cluster, ETCD)},
        )
        if not groups:
            return
        sg = groups[0]
        current = _tags(sg)
        new = {k: v for k, v in tags.items() if v is not None and current.get(k) != v}
        stale = {k for k, v in tags.items() if k in current and current[k] != v}
        if new:
            self._tag("SecurityGroup", [sg["id"]], new, replacing=stale)
        elif stale:
            self._untag("SecurityGroup", [sg["id"]], {k: current[k] for k in stale})

    # --- the lock: a security group, because CloudStack refuses a second of one name ---
    def take_lock(self, cluster: str, holder: str) -> str | None:
        name = naming.lock_name(cluster)

        def existing() -> dict[str, Any] | None:
            found = self._lock_group(name)
            return {"securitygroup": found} if found else None

        try:
            body = self.api.call(
                "createSecurityGroup",
                {"name": name, "description": holder},
                find_existing=existing,
            )
        except CloudError as exc:
            if "already exists" not in str(exc):
                raise
            found = self._lock_group(name)
            if found is None:  # released in between: try once more
                return self.take_lock(cluster, holder)
            body = {"securitygroup": found}
        group = body.get("securitygroup", body)
        record = group.get("description") or "unknown:0:0"
        if record != holder:
            return str(record)
        self._locks[(cluster, holder)] = group["id"]
        return None

    def release_lock(self, cluster: str, holder: str | None) -> None:
        group_id = self._locks.pop((cluster, holder), None) if holder else None
        if group_id is None:  # not taken by this process: look, and delete only a match
            found = self._lock_group(naming.lock_name(cluster))
            if found is None or (holder is not None and found.get("description") != holder):
                return
            group_id = found["id"]
        self._ignore_gone(lambda: self.api.call("deleteSecurityGroup", {"id": group_id}))

    def _lock_group(self, name: str) -> dict[str, Any] | None:
        found = self.api.list_all(
            "listSecurityGroups", "securitygroup", {"securitygroupname": name}
        )
        return next((g for g in found if g.get("name") == name), None)

    # --- machines: the engine's create pipeline runs on these -------------------
    def begin_deploy(self, request: MachineRequest) -> str:
        self._roles_by_name[request.name] = request.role
        submit: Callable[[], str] = self._deployer(request)
        return submit()

    def deploy_gate(self, request: MachineRequest) -> tuple[str, ...]:
        # Deploys joining an affinity group wait for its creation job.
        gate = self._spread_jobs.get(request.spread_group or "")
        return (gate,) if gate else ()

    def begin_start(self, machine_id: str) -> str:
        return str(self.api.call("startVirtualMachine", {"id": machine_id})["jobid"])

    def begin_destroy(self, machine_id: str) -> str:
        submit: Callable[[], str] = self._destroyer(machine_id)
        return submit()

    def operation_failure(self, op_id: str | None) -> str:
        return self._failure_reason(op_id)

    def machines_named(self, names: Sequence[str]) -> list[Machine]:
        return [_to_machine(vm, self._role(vm)) for vm in self._list_vms(names)]

    def machines_by_id(self, ids: Sequence[str]) -> list[Machine]:
        if not ids:
            return []
        return [_to_machine(vm, self._role(vm)) for vm in self._vms_by_id(ids)]

    def _failure_reason(self, jobid: str | None) -> str:
        if jobid is None:
            return "never submitted"
        if is_already_done(jobid):  # found by name after a lost answer: no job to ask
            return "VM not in the expected state"
        try:
            self.jobs.result(jobid)
        except JobFailed as exc:
            return str(exc)
        return "VM not in the expected state"

    def _deployer(self, r: MachineRequest) -> Any:
        params: dict[str, Any] = {
            "name": r.name,
            "displayname": r.name,
            "zoneid": r.zone_id,
            "templateid": r.image_id,
            "serviceofferingid": r.size_id,
            "securitygroupnames": ",".join(r.group_names),
            "keypair": r.key_name,
            "startvm": r.start,
            "userdata": cs_userdata.encode(r.userdata),
        }
        if r.spread_group:
            params["affinitygroupnames"] = r.spread_group
        if r.disk_gb:
            params["rootdisksize"] = r.disk_gb

        def existing() -> dict[str, Any] | None:
            # The deploy may have gone through: adopt the VM instead of deploying twice.
            found = self._list_vms([r.name])
            return {"jobid": self._finished_marker(found[0])} if found else None

        def submit() -> str:
            try:
                body = self.api.call(
                    "deployVirtualMachine", params, post=True, find_existing=existing
                )
            except CloudError as exc:
                raise _userdata_refused(exc, r.name, params["userdata"]) or exc from None
            return str(body["jobid"])

        return submit

    def _finished_marker(self, vm: Mapping[str, Any]) -> str:
        """A job id for a VM found already there: its last job, or one that has ended."""
        jobid = vm.get("jobid")
        return str(jobid) if jobid else already_done(vm["id"])

    def _list_vms(self, names: Sequence[str]) -> list[dict[str, Any]]:
        if not names:
            return []
        prefix = min(names, key=len).rsplit("-", 2)[0]
        wanted = set(names)
        return [
            vm
            for vm in self.api.list_all(
                "listVirtualMachines", "virtualmachine", {"keyword": prefix}
            )
            if vm["name"] in wanted
        ]

    def tag_machines(
        self,
        ids: Sequence[str],
        tags: Mapping[str, str],
        verify: bool = True,
        replacing: Collection[str] = (),
    ) -> None:
        self._tag("UserVm", ids, tags, check=verify, replacing=replacing)

    def _vms_by_id(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        return self.api.list_all("listVirtualMachines", "virtualmachine", {"ids": ",".join(ids)})

    def set_userdata(self, userdata: Mapping[str, str]) -> None:
        for vm_id, text in userdata.items():
            encoded = cs_userdata.encode(text)
            try:
                self.api.call("updateVirtualMachine", {"id": vm_id, "userdata": encoded}, post=True)
            except CloudError as exc:
                names = [vm["name"] for vm in self._vms_by_id([vm_id])] if exc.code == 431 else []
                raise _userdata_refused(exc, names[0] if names else vm_id, encoded) or exc from None

    def _power(self, command: str, ids: Sequence[str], want: str, verb: str) -> list[Machine]:
        """Start or stop, and again for those whose job failed: both are idempotent."""
        if not ids:
            return []
        what = f"{len(ids)} machines to {verb}"
        todo, reasons = list(ids), {}
        for _ in range(POWER_ATTEMPTS):
            subs = [Submission(i, self._simple_job(command, {"id": i})) for i in todo]
            # Counted in machines; a retry counts only those it retries.
            this_round = what if len(todo) == len(ids) else f"{len(todo)} machines to {verb} again"
            done = self.jobs.run(subs, self.timeout_s, this_round, machines=True)
            vms = {vm["id"]: vm for vm in self._vms_by_id(ids)}
            todo = [i for i in ids if vms.get(i, {}).get("state") != want]
            if not todo:
                return [_to_machine(vms[i], self._role(vms[i])) for i in ids]
            reasons = {i: self._failure_reason(done.get(i)) for i in todo}
            log.info("%s: %d failed, trying again", what, len(todo))
        listed = "; ".join(
            f"{vms.get(i, {}).get('name', i)}: {reasons[i]}" for i in sorted(todo)[:3]
        )
        more = f" (and {len(todo) - 3} more)" if len(todo) > 3 else ""
        raise CloudError(f"{what}: {listed}{more}")

    def _role(self, vm: Mapping[str, Any]) -> str:
        role = _tags(vm).get(ROLE_TAG) or self._roles.get(vm["id"])
        role = role or self._roles_by_name.get(vm.get("name", ""))
        if role:
            self._roles[vm["id"]] = role
        return role or "unknown"

    def _simple_job(self, command: str, params: Mapping[str, Any]) -> Any:
        return lambda: str(self.api.call(command, params)["jobid"])

    def start_machines(self, ids: Sequence[str]) -> list[Machine]:
        return self._power("startVirtualMachine", ids, "Running", "start")

    def stop_machines(self, ids: Sequence[str]) -> list[Machine]:
        return self._power("stopVirtualMachine", ids, "Stopped", "stop")

    def destroy_machines(self, ids: Sequence[str]) -> None:
        self._destroy_and_revoke(ids, [])

    def teardown(self, live: LiveState, on_phase: Callable[[str], None]) -> None:
        """CloudStack refuses to delete a security group that a rule allows (even its own)
        or that a VM is in, and an affinity group that holds a VM. So: VMs and
        group-to-group rules go at once, the affinity group's members first, and the
        affinity group as soon as they are gone (while the other VMs still go); then, at
        the checks that nothing is left, the security groups and the key pair."""
        group_rules = [[r.id for r in g.rules if r.rule.source_group] for g in live.groups]
        group_rules = [chain for chain in group_rules if chain]
        spread = [s.id for s in live.spread_groups if s.id]
        members = {m.id for m in live.machines if self._in_spread(m.id, spread)}
        ids = sorted((m.id for m in live.machines), key=lambda i: i not in members)
        done: list[Task] = []
        if ids or group_rules or spread:
            on_phase(
                f"destroying {len(ids)} VM(s) and {len(spread)} affinity group(s), "
                f"revoking {sum(map(len, group_rules))} group rule(s)"
            )
            done = self._destroy_and_revoke(ids, group_rules, spread, members, check=False)
        if live.groups:
            on_phase(f"deleting {len(live.groups)} security group(s)")
        # The checks first (both at once): a VM still there would make a group's deletion
        # fail too. Then the groups and the key at once: none depends on another now.
        self.jobs.concurrently(
            [lambda: self._check_machines_gone(ids)]
            + ([lambda: self._check_spread_gone(done, spread)] if spread else [])
        )
        deletes = [partial(self._delete_group, group.id) for group in live.groups]
        deletes += [partial(self.delete_ssh_key, key.name) for key in live.keys]
        self.jobs.concurrently(deletes)
        self.settle()

    def _in_spread(self, machine_id: str, spread_ids: Sequence[str]) -> bool:
        """Is the machine in one of these affinity groups? Unknown (not listed by this
        instance): assumed so, which only makes the group wait for it."""
        groups = self._spread_of.get(machine_id)
        return groups is None or bool(groups & set(spread_ids))

    def _destroy_and_revoke(
        self,
        machine_ids: Sequence[str],
        rule_chains: Sequence[Sequence[str]],
        spread_group_ids: Sequence[str] = (),
        spread_members: set[str] | None = None,
        check: bool = True,
    ) -> list[Task]:
        """Destroy machines and revoke rules at the same time, and delete the affinity
        groups as soon as their members (`spread_members`, default: all the machines) are
        gone; return when all is done. `rule_chains`: the rules to revoke, one list per
        security group. `check`: make sure nothing is left."""
        vm_ids = set(machine_ids)
        members = vm_ids if spread_members is None else spread_members & vm_ids

        def on_round(pipe: Pipeline, finished: list[Task]) -> None:
            # Affinity groups go as soon as their VMs are gone, not after the rules.
            done = {t.key for t in pipe.done}
            if (
                spread_group_ids
                and members <= done
                and not any(t.lane == "spread" for t in pipe.done + list(pipe.inflight.values()))
            ):
                for group_id in spread_group_ids:
                    pipe.add(Task(group_id, self._spread_deleter(group_id), lane="spread"))

        rules = sum(map(len, rule_chains))
        pipe = self.jobs.pipeline(
            self.timeout_s,
            f"{len(machine_ids)} VMs to destroy, {rules} rules to revoke",
            on_round=on_round,
            # CloudStack runs one group's rule jobs in turn: one running and the next
            # waiting keeps each group busy, without a burst of jobs that only queue
            # (a burst past the rate limit would hold back the destroys, and the chains).
            limits={f"rules:{i}": RULES_AHEAD_PER_GROUP for i in range(len(rule_chains))},
            # In machines (the rules ride along): none to destroy, no count.
            count=MachineCount.of_keys(f"{len(vm_ids)} machines to destroy", vm_ids),
        )
        # Destroys first (the affinity groups wait for them), then every group's rules.
        for vm_id in machine_ids:
            pipe.add(Task(vm_id, self._destroyer(vm_id)))
        for i, chain in enumerate(rule_chains):
            for rule_id in chain:
                pipe.add(Task(rule_id, self._revoker(rule_id), lane=f"rules:{i}"))
        if not members:
            for group_id in spread_group_ids:
                pipe.add(Task(group_id, self._spread_deleter(group_id), lane="spread"))
        done = pipe.run()
        if check:
            self._check_machines_gone(machine_ids)
            if spread_group_ids:
                self._check_spread_gone(done, spread_group_ids)
        return done

    def _check_machines_gone(self, machine_ids: Sequence[str]) -> None:
        still = [vm["id"] for vm in self._vms_by_id(machine_ids)] if machine_ids else []
        if still:
            raise CloudError(f"{len(still)} VM(s) still exist after destroy: {', '.join(still)}")

    def _check_spread_gone(self, done: Sequence[Task], group_ids: Sequence[str]) -> None:
        """A finished delete job is not a deleted group: the job may have failed (530, or
        a VM not yet gone), or the job waited for was a repeat sent after a lost answer.
        The cloud is the truth: whatever is still listed is reported, so `down` re-reads
        the cloud and tries again instead of calling it done."""
        wanted = set(group_ids)
        left = [
            g for g in self.api.list_all("listAffinityGroups", "affinitygroup") if g["id"] in wanted
        ]
        if not left:
            return
        reason = ""
        jobs = {t.key: t.op_id for t in done if t.lane == "spread"}
        for group in left:
            jobid = jobs.get(group["id"])
            if jobid and not is_already_done(jobid):
                try:
                    self.jobs.result(jobid)
                except JobFailed as exc:
                    reason = f" ({exc})"
                    break
        names = ", ".join(g["name"] for g in left)
        raise CloudError(f"{len(left)} affinity group(s) still exist after delete: {names}{reason}")

    def _destroyer(self, vm_id: str) -> Any:
        def submit() -> str:
            try:
                body = self.api.call("destroyVirtualMachine", {"id": vm_id, "expunge": True})
            except CloudError as exc:
                # Gone: an earlier attempt, whose answer was lost, expunged it already.
                if not _gone(exc):
                    raise
                return already_done(vm_id)
            return str(body["jobid"])

        return submit

    def _spread_deleter(self, group_id: str) -> Any:
        def submit() -> str:
            try:
                return str(self.api.call("deleteAffinityGroup", {"id": group_id})["jobid"])
            except CloudError as exc:
                if not _gone(exc):
                    raise
                return already_done(group_id)  # already gone: nothing to wait for

        return submit

    def _delete_group(self, group_id: str) -> None:
        self._ignore_gone(lambda: self.api.call("deleteSecurityGroup", {"id": group_id}))

    def delete_ssh_key(self, name: str) -> None:
        self._ignore_gone(lambda: self.api.call("deleteSSHKeyPair", {"name": name}))

    @staticmethod
    def _ignore_gone(action: Any) -> None:
        """Deleting something already gone is success: `down` may run twice."""
        try:
            action()
        except CloudError as exc:
            if not _gone(exc):
                raise
