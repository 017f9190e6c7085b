"""plan, up, status, list, down: the commands that talk to the cloud.

Each parses, calls the engine, and hands the result to cli.output. `status`, `list` and
`down` need no spec: `--cluster NAME` with `--profile` (or the CLOUDSTACK_* variables).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from stackfleet.cli.common import (
    confirm,
    global_options,
    handle_errors,
    load,
    settings,
    spec_option,
)
from stackfleet.cli.output import emit, note
from stackfleet.errors import BadInput, ExitCode, StackfleetError


def _target_options(func: Any) -> Any:
    func = click.option(
        "--profile",
        help="Without a spec: 'simulator' or a cloudstack.ini section.",
    )(func)
    func = click.option("--cluster", "cluster_name", help="Without a spec: the cluster's name.")(
        func
    )
    return spec_option(func)


def _resolve_target(spec_path: Path, cluster_name: str | None, profile: str | None) -> Any:
    """(cluster name, CloudTarget, spec or None) from a spec file or from flags."""
    from stackfleet.provisioners.session import CloudTarget

    if cluster_name:
        return cluster_name, CloudTarget(profile), None
    if not spec_path.exists() and profile is not None:
        raise BadInput("--profile needs --cluster NAME (or a spec with -f)")
    spec = load(spec_path)
    return spec.name, _spec_target(spec, profile), spec


def _spec_target(spec: Any, profile: str | None = None) -> Any:
    from stackfleet.provisioners.session import CloudTarget

    return CloudTarget(
        profile or spec.profile,
        spec.endpoint,
        spec.concurrency,
        spec.timeout_s,
        simulator_hypervisor=spec.simulator_hypervisor,
        simulator_mirror=spec.simulator_mirror,
    )


def _machines_json(machines: Any) -> list[dict[str, Any]]:
    from stackfleet.provisioners.base import BOOTSTRAP_TAG

    order = {"etcd": 0, "control": 1, "worker": 2}
    return [
        {
            "name": m.name,
            "role": m.role,
            "state": m.state,
            "ip": m.private_ip,
            "public_ip": m.public_ip,
            "id": m.id,
            "bootstrapped": m.tags.get(BOOTSTRAP_TAG) == "done",
        }
        for m in sorted(machines, key=lambda m: (order.get(m.role, 9), _natural(m.name)))
    ]


def _natural(name: str) -> tuple[str, int]:
    stem, _, num = name.rpartition("-")
    return (stem, int(num)) if num.isdigit() else (name, 0)


def _status_data(cluster: str, live: Any) -> dict[str, Any]:
    from stackfleet.provisioners.base import EXPIRES_TAG

    nodes = _machines_json(live.machines)
    return {
        "cluster": cluster,
        "exists": not live.is_empty(),
        "expires": live.tags.get(EXPIRES_TAG),
        "nodes": nodes,
        "groups": [{"name": g.name, "rules": len(g.rules)} for g in live.groups],
        "summary": {
            "nodes": len(nodes),
            "running": sum(1 for n in nodes if n["state"] == "Running"),
        },
    }


def _show_status(data: dict[str, Any]) -> None:
    rows = [
        (n["name"], n["role"], n["state"], n["ip"], "yes" if n["bootstrapped"] else "no")
        for n in data["nodes"]
    ]
    s = data["summary"]
    emit(
        data,
        settings().output,
        f"cluster {data['cluster']}: {s['running']}/{s['nodes']} running",
        ["node", "role", "state", "ip", "bootstrapped"],
        rows,
    )


@click.command()
@_target_options
@global_options
@handle_errors
def status(spec_path: Path, cluster_name: str | None, profile: str | None) -> None:
    """Show the cluster's nodes as the cloud has them (found by tags, no local state).

    JSON (--output json): {"cluster", "exists", "expires", "nodes": [{"name", "role",
    "state", "ip", "public_ip", "id", "bootstrapped"}], "groups": [{"name", "rules"}],
    "summary": {"nodes", "running"}}.
    """
    from stackfleet.provisioners.session import open_cloud

    name, target, _ = _resolve_target(spec_path, cluster_name, profile)
    with open_cloud(target) as prov:
        _show_status(_status_data(name, prov.live_state(name)))


@click.command()
@spec_option
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when nothing would change, 2 when `up` has changes to make, 1 on an "
    "error (as terraform plan does).",
)
@global_options
@handle_errors
def plan(spec_path: Path, detailed_exitcode: bool) -> None:
    """Show what `up` would create, change or delete, diffed with what the cloud has.

    Reads only, and refuses exactly where `up` would (same diff, same checks). JSON:
    {"cluster", "strategy", "actions": [{"verb", "kind", "name", "detail"}]}.
    """
    try:
        actions = _plan(spec_path)
    except StackfleetError as exc:
        if detailed_exitcode:
            exc.exit_code = ExitCode.CLOUD_FAILURE  # 2 means "changes pending" here
        raise
    if detailed_exitcode and actions:
        raise click.exceptions.Exit(2)


def _plan(spec_path: Path) -> list[Any]:
    from stackfleet import state
    from stackfleet.cli.spec_cmds import EXAMPLE_KEY
    from stackfleet.provisioners.plan import local_ca_tags, make_plan
    from stackfleet.provisioners.session import open_cloud
    from stackfleet.provisioners.up import preflight

    spec = load(spec_path)
    # The key `up` would register: the one this machine holds, or (none yet) a new one.
    public_key = state.operator_public_key(spec.name)
    with open_cloud(_spec_target(spec)) as prov:
        result = make_plan(spec, prov, public_key, local_ca_tags(spec.name))
        preflight(spec, prov, result, public_key or EXAMPLE_KEY)
    actions = result.actions()
    data = {
        "cluster": spec.name,
        "strategy": result.resolved.strategy,
        "actions": [vars(a) for a in actions],
    }
    rows = [(a.verb, a.kind, a.name, a.detail) for a in actions]
    title = f"plan for {spec.name}: {len(actions)} change(s)" if actions else "no changes"
    emit(data, settings().output, title, ["action", "kind", "name", "detail"], rows)
    return actions


def _approve(plan: Any, shown: Any) -> None:
    """Before destroying machines: show the plan (on stderr: stdout may be JSON) and ask;
    without a terminal (and without --yes), refuse in one line."""
    import sys

    names = sorted(m.name for m in plan.destroys())
    question = f"Destroy {len(names)} VM(s) ({', '.join(names)})?"
    if settings().yes or not sys.stdin.isatty():
        confirm(question)
        return
    with shown.paused():
        actions = plan.actions()
        click.echo(f"plan for {plan.spec.name}: {len(actions)} change(s)", err=True)
        for a in actions:
            click.echo(f"  {a.verb:9} {a.kind:12} {a.name}  {a.detail}".rstrip(), err=True)
        confirm(question)


@click.command()
@spec_option
@click.option(
    "--wait/--no-wait",
    "wait",
    default=None,
    help="Wait until etcd reports healthy, asked over SSH (default: when the nodes are "
    "reachable: not on the simulator, and only with access.ssh_cidrs).",
)
@global_options
@handle_errors
def up(spec_path: Path, wait: bool | None) -> None:
    """Create the cluster, or repair it to match the spec. A second run changes nothing.

    Safe to interrupt and run again: it finds what exists by tags and names. Shows the
    plan and asks before destroying any VM, unless --yes (no terminal: refuses). JSON:
    {"changed": bool, "actions": [...], "status": <the status object>}.
    """
    from stackfleet.cli.progress import events
    from stackfleet.provisioners.session import open_cloud
    from stackfleet.provisioners.up import up as run_up
    from stackfleet.statestore import guard_up

    spec = load(spec_path)
    with events() as shown, open_cloud(_spec_target(spec), on_progress=shown.progress) as prov:
        with guard_up(spec.name, spec.state, prov):  # the store's PKI, checked with the cloud
            result = run_up(spec, prov, shown, approve=lambda p: _approve(p, shown))
        live = prov.live_state(spec.name)
        _wait_ready(spec, live.machines, wait, shown)
    data: dict[str, Any] = {
        "changed": result.changed,
        "actions": [vars(a) for a in result.plan.actions()],
        "status": _status_data(spec.name, live),
    }
    if settings().output == "json":
        emit(data, "json", "", [], [])
        return
    if not result.changed:
        note(f"cluster {spec.name} already matches the spec: nothing to do")
    _show_status(data["status"])


def _wait_ready(spec: Any, machines: Any, wait: bool | None, events: Any) -> None:
    from stackfleet.provisioners.reach import check_reachable

    members = [m for m in machines if m.role == "etcd"]
    if wait is None:
        reason = None
        if any(m.simulated for m in members):
            reason = "the simulator's VMs run nothing (hypervisor Simulator)"
        elif not spec.ssh_cidrs:
            reason = "access.ssh_cidrs is empty, so no node is reachable over SSH"
        if reason:
            note(f"not waiting for etcd health: {reason} (VMs are Running)")
            return
    elif not wait:
        return
    from stackfleet import state
    from stackfleet.provisioners.readiness import wait_for_etcd
    from stackfleet.provisioners.ssh_client import LOGIN_USERS, connect
    from stackfleet.provisioners.ssh_push import host_key

    key = state.operator_ssh_key(spec.name).private_path

    def ssh(machine: Any) -> Any:
        address = machine.public_ip or machine.private_ip
        return connect(address, LOGIN_USERS[spec.os], key, host_key(spec.name, machine.name))

    check_reachable(members)
    wait_for_etcd(members, ssh, deadline_s=spec.timeout_s, events=events)


@click.command("list")
@click.option("--profile", help="'simulator' or a cloudstack.ini section (default: env/ini).")
@global_options
@handle_errors
def list_clusters(profile: str | None) -> None:
    """List the stackfleet clusters in the account. JSON: [{"name", "machines", "expires"}]."""
    from stackfleet.provisioners.session import CloudTarget, open_cloud

    with open_cloud(CloudTarget(profile)) as prov:
        clusters = prov.list_clusters()
    data = [vars(c) for c in clusters]
    rows = [(c.name, c.machines, c.expires) for c in clusters]
    emit(data, settings().output, "clusters", ["cluster", "machines", "expires"], rows)


@click.command()
@_target_options
@click.option("--expired", is_flag=True, help="Tear down every cluster whose ttl has passed.")
@click.option("--keep-local", is_flag=True, help="Keep the local PKI and keys of the cluster.")
@global_options
@handle_errors
def down(
    spec_path: Path, cluster_name: str | None, profile: str | None, expired: bool, keep_local: bool
) -> None:
    """Delete every VM, group, rule, key and affinity group of the cluster.

    Found by tags and names, with no local state. Asks first unless --yes. Running it
    twice is fine. JSON: [{"cluster", "machines", "groups", "rules", "keys", "spread_groups"}].
    """
    from stackfleet.cli.progress import events
    from stackfleet.provisioners.down import down as run_down
    from stackfleet.provisioners.down import expired_clusters
    from stackfleet.provisioners.session import CloudTarget, open_cloud

    spec = None
    if expired:
        target = CloudTarget(profile) if profile or cluster_name else None
        if target is None:
            _, target, spec = _resolve_target(spec_path, None, None)
    else:
        name, target, spec = _resolve_target(spec_path, cluster_name, profile)
    results = []
    with events() as shown, open_cloud(target, on_progress=shown.progress) as prov:
        names = expired_clusters(prov) if expired else [name]
        if names and not expired:
            live = prov.live_state(name)
            if live.is_empty():
                names = []
                note(f"cluster {name}: nothing to delete")
        if names:
            confirm(f"Delete cluster(s) {', '.join(names)} and everything in them?")
        for cluster in names:
            results.append(run_down(cluster, prov, shown, keep_local=keep_local))
            if not keep_local:  # the cloud is empty now: so goes the cluster's stored PKI
                from stackfleet.statestore import forget

                forget(cluster, spec.state if spec else None)
    data = [vars(r) for r in results]
    rows = [(r.cluster, r.machines, r.groups, r.rules, r.keys, r.spread_groups) for r in results]
    emit(
        data,
        settings().output,
        "deleted",
        ["cluster", "vms", "groups", "rules", "keys", "affinity groups"],
        rows,
    )
