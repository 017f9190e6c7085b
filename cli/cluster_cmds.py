"""plan, up, status, list, down: the commands that talk to the cloud.

Each parses, calls the engine, and hands the result to cli.output. `status`, `list` and
`down` need no spec: `--cluster NAME` finds the cluster in the cloud that `--profile`
names, else in the one the CLOUDSTACK_* variables or cloudstack.ini name (as `cs` finds it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from stackfleet.cli.common import (
    check_cluster_name,
    confirm,
    global_options,
    handle_errors,
    load,
    settings,
    spec_option,
)
from stackfleet.cli.output import emit, note
from stackfleet.errors import BadInput, ExitCode, StackfleetError

# Where a command without a spec finds its cloud, for help and error texts.
FLAG_CLOUD = "--provider and --profile, else the CLOUDSTACK_* variables or cloudstack.ini"


def _provider_option(func: Any) -> Any:
    """--provider for commands that read no spec (a spec names its own cloud.provider)."""
    from stackfleet.provisioners.registry import DEFAULT_PROVIDER, PROVIDERS

    return click.option(
        "--provider",
        type=click.Choice(sorted(PROVIDERS)),
        default=DEFAULT_PROVIDER,
        show_default=True,
        envvar="STACKFLEET_PROVIDER",
        help="Without a spec: the cloud's API (exoscale finds EXOSCALE_API_KEY/_SECRET or "
        "the exo CLI's config). Env: STACKFLEET_PROVIDER.",
    )(func)


def _flag_target(profile: str | None, provider: str) -> Any:
    """The cloud a command without a spec works in: its flags'."""
    from stackfleet.provisioners.session import CloudTarget

    return CloudTarget(profile, profile_from="--profile", provider=provider)


def _target_options(func: Any) -> Any:
    func = _provider_option(func)
    func = click.option(
        "--profile",
        help="Without a spec: 'simulator' or a cloudstack.ini section (default: the "
        "CLOUDSTACK_* variables, else cloudstack.ini as `cs` reads it).",
    )(func)
    func = click.option(
        "--cluster",
        "cluster_name",
        help="Without a spec: the cluster's name, e.g. demo (no spec is read).",
    )(func)
    return spec_option(func)


def _given(param: str) -> bool:
    """Was this option typed on the command line (not its default, not an env var)?"""
    source = click.get_current_context().get_parameter_source(param)
    return source is click.core.ParameterSource.COMMANDLINE


def _resolve_target(
    spec_path: Path, cluster_name: str | None, profile: str | None, provider: str
) -> Any:
    """(cluster name, CloudTarget, spec or None) from a spec file or from flags."""
    if cluster_name:
        if _given("spec_path"):
            raise BadInput(
                f"-f {spec_path} and --cluster {cluster_name}: give one of them "
                "(--cluster reads no spec)"
            )
        return check_cluster_name(cluster_name), _flag_target(profile, provider), None
    if not spec_path.exists() and profile is not None:
        raise BadInput("--profile needs --cluster NAME (or a spec with -f)")
    if not spec_path.exists() and not _given("spec_path"):
        raise BadInput(
            f"{spec_path}: no such spec file; pass -f FILE, or name the cluster with "
            f"--cluster NAME (its cloud: {FLAG_CLOUD})"
        )
    spec = load(spec_path)
    _no_provider_with_a_spec(spec)
    return spec.name, _spec_target(spec, profile), spec


def _no_provider_with_a_spec(spec: Any) -> None:
    if _given("provider") and click.get_current_context().params["provider"] != spec.provider:
        raise BadInput(
            f"--provider: the spec names its cloud (cloud.provider: {spec.provider}); "
            "drop --provider, or use --cluster NAME without a spec"
        )


def _spec_target(spec: Any, profile: str | None = None) -> Any:
    from stackfleet.provisioners.session import CloudTarget

    return CloudTarget(
        profile or spec.profile,
        spec.endpoint,
        spec.concurrency,
        spec.timeout_s,
        simulator_hypervisor=spec.simulator_hypervisor,
        simulator_mirror=spec.simulator_mirror,
        provider=spec.provider,
        zone=spec.zone,
    )


def _machines_json(machines: Any) -> list[dict[str, Any]]:
    from stackfleet.provisioners.base import BOOTSTRAP_TAG
    from stackfleet.roles import order

    return [
        {
            "name": m.name,
            "role": m.role,
            "state": m.state.value,  # the engine's word, the same on every cloud
            "ip": m.private_ip,
            "public_ip": m.public_ip,
            "id": m.id,
            "bootstrapped": m.tags.get(BOOTSTRAP_TAG) == "done",
        }
        for m in sorted(machines, key=lambda m: (order(m.role), _natural(m.name)))
    ]


def _natural(name: str) -> tuple[str, int]:
    stem, _, num = name.rpartition("-")
    return (stem, int(num)) if num.isdigit() else (name, 0)


def _status_data(cluster: str, live: Any, spec: Any = None) -> dict[str, Any]:
    """The status object (docs/output.md#status). With a spec, counted against it:
    `summary.running` counts the running machines the spec wants, `spec.missing` names
    the wanted machines the cloud lacks; without one, it counts what exists."""
    from stackfleet.cert_expiry import as_json as certificates_json
    from stackfleet.provisioners.base import EXPIRES_TAG, MachineState

    RUNNING = MachineState.RUNNING.value

    nodes = _machines_json(live.machines)
    compared = _against_spec(nodes, spec)
    counted = compared["wanted_names"] if compared else {n["name"] for n in nodes}
    data: dict[str, Any] = {
        "cluster": cluster,
        "exists": not live.is_empty(),
        "expires": live.tags.get(EXPIRES_TAG),
        "nodes": nodes,
        "groups": [{"name": g.name, "rules": len(g.rules)} for g in live.groups],
        "spec": None,
        "summary": {
            "nodes": len(nodes),
            "running": sum(1 for n in nodes if n["state"] == RUNNING and n["name"] in counted),
            "wanted": None,
        },
    }
    if compared:
        data["spec"] = {k: compared[k] for k in ("file", "missing", "extra")}
        data["summary"]["wanted"] = len(compared["wanted_names"])
    data["certificates"] = certificates_json(cluster)  # the local PKI's expiry dates
    return data


def _against_spec(nodes: list[dict[str, Any]], spec: Any) -> dict[str, Any] | None:
    """The spec's machines next to the cloud's: which it lacks, which the spec does not want."""
    if spec is None:
        return None
    wanted = [name for name, _role in spec.machine_names()]
    present = {n["name"] for n in nodes}
    return {
        "file": spec.source,
        "wanted_names": set(wanted),
        "missing": [name for name in wanted if name not in present],
        "extra": [n["name"] for n in nodes if n["name"] not in set(wanted)],
    }


def _show_status(data: dict[str, Any]) -> None:
    rows: list[tuple[Any, ...]] = [
        (n["name"], n["role"], n["state"], n["ip"], "yes" if n["bootstrapped"] else "no")
        for n in data["nodes"]
    ]
    compared = data["spec"]
    for name in compared["missing"] if compared else []:
        rows.append((name, _role_of(data["cluster"], name), "missing", None, None))
    emit(
        data,
        settings().output,
        _status_title(data),
        ["node", "role", "state", "ip", "bootstrapped"],
        rows,
    )
    certs = data["certificates"]  # expiry of the local PKI's certificates, then warnings
    if certs["present"] and settings().output != "json":
        rows = [(c["what"], c["node"], c["not_after"][:10], c["days_left"]) for c in certs["items"]]
        emit(
            data,
            "table",
            f"certificates in {certs['pki']}",
            ["certificate", "node", "expires", "days"],
            rows,
        )
    for line in certs["warnings"]:
        click.echo(line, err=True)


def _status_title(data: dict[str, Any]) -> str:
    """The table's title, e.g. "cluster demo: 7/9 running; missing: worker-3, worker-4"
    (names without the cluster's prefix: the title already says which cluster)."""
    s, compared, cluster = data["summary"], data["spec"], data["cluster"]
    if compared is None and not data["exists"]:
        return (
            f"cluster {cluster}: nothing in the cloud is tagged with it (no spec to compare with)"
        )
    if compared is None:
        return (
            f"cluster {cluster}: {s['running']}/{s['nodes']} running "
            "(no spec to compare with: counted what the cloud has)"
        )
    title = f"cluster {cluster}: {s['running']}/{s['wanted']} running"
    if compared["missing"]:
        title += f"; missing: {_short_names(cluster, compared['missing'])}"
    if compared["extra"]:
        title += f"; not in the spec: {_short_names(cluster, compared['extra'])}"
    return title


def _short_names(cluster: str, names: list[str], most: int = 8) -> str:
    short = [name.removeprefix(f"{cluster}-") for name in names]
    more = f" and {len(short) - most} more" if len(short) > most else ""
    return ", ".join(short[:most]) + more


def _role_of(cluster: str, name: str) -> str | None:
    from stackfleet.provisioners.naming import role_from_machine_name

    return role_from_machine_name(cluster, name)


@click.command()
@_target_options
@global_options
@handle_errors
def status(spec_path: Path, cluster_name: str | None, profile: str | None, provider: str) -> None:
    """Show the cluster's nodes as the cloud has them (found by tags, no local state),
    counted against the spec ("7/9 running; missing: worker-3, worker-4").

    With --cluster NAME no spec is read: it counts what exists, in the cloud of --profile,
    else of the CLOUDSTACK_* variables or cloudstack.ini. JSON: docs/output.md#status.
    """
    from stackfleet.provisioners.session import open_cloud

    name, target, spec = _resolve_target(spec_path, cluster_name, profile, provider)
    with open_cloud(target) as prov:
        _show_status(_status_data(name, prov.live_state(name), spec))


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
    docs/output.md#plan.
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
        "actions": _actions_json(actions),
    }
    rows = [(a.verb, a.kind, a.name, a.detail) for a in actions]
    title = f"plan for {spec.name}: {len(actions)} change(s)" if actions else "no changes"
    emit(data, settings().output, title, ["action", "kind", "name", "detail"], rows)
    return actions


def _actions_json(actions: list[Any]) -> list[dict[str, str]]:
    return [{"verb": a.verb, "kind": a.kind, "name": a.name, "detail": a.detail} for a in actions]


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
@click.option(
    "--skip-drain",
    is_flag=True,
    help="Destroy workers the spec no longer wants without cordoning and draining them.",
)
@click.option(
    "--drain-timeout",
    "drain_timeout_s",
    type=click.IntRange(1, 86400),
    default=300,
    show_default=True,
    metavar="SECONDS",
    help="Deadline of each worker's `kubectl drain` on the control node.",
)
@global_options
@handle_errors
def up(spec_path: Path, wait: bool | None, skip_drain: bool, drain_timeout_s: int) -> None:
    """Create the cluster, or repair it to match the spec. A second run changes nothing.

    Safe to interrupt and run again: it finds what exists by tags and names. Shows the
    plan and asks before destroying any VM, unless --yes (no terminal: refuses). JSON:
    docs/output.md#up.
    """
    from stackfleet.cli.progress import events
    from stackfleet.provisioners.readiness import wait_ready
    from stackfleet.provisioners.session import open_cloud
    from stackfleet.provisioners.up import Drain
    from stackfleet.provisioners.up import up as run_up
    from stackfleet.statestore import guard_up

    spec = load(spec_path)
    with events() as shown, open_cloud(_spec_target(spec), on_progress=shown.progress) as prov:
        with guard_up(spec.name, spec.state, prov):  # the store's PKI, checked with the cloud
            result = run_up(
                spec,
                prov,
                shown,
                approve=lambda p: _approve(p, shown),
                drain=Drain(skip_drain, drain_timeout_s),
            )
        live = prov.live_state(spec.name)
        skipped = wait_ready(spec, live.machines, wait, shown)
    if skipped:
        note(skipped)
    data: dict[str, Any] = {
        "changed": result.changed,
        "actions": _actions_json(result.plan.actions()),
        "status": _status_data(spec.name, live, spec),
    }
    if settings().output == "json":
        emit(data, "json", "", [], [])
        return
    if not result.changed:
        note(f"cluster {spec.name} already matches the spec: nothing to do")
    _show_status(data["status"])


@click.command("list")
@click.option(
    "--profile",
    help="'simulator' or a cloudstack.ini section (default: the CLOUDSTACK_* variables, "
    "else cloudstack.ini as `cs` reads it).",
)
@_provider_option
@global_options
@handle_errors
def list_clusters(profile: str | None, provider: str) -> None:
    """List the stackfleet clusters in the account (no spec is read).

    The account is --profile's, else the CLOUDSTACK_* variables' or cloudstack.ini's.
    JSON: docs/output.md#list.
    """
    from stackfleet.provisioners.session import open_cloud

    with open_cloud(_flag_target(profile, provider)) as prov:
        clusters = prov.list_clusters()
    data = [{"name": c.name, "machines": c.machines, "expires": c.expires} for c in clusters]
    rows = [(c.name, c.machines, c.expires) for c in clusters]
    emit(data, settings().output, "clusters", ["cluster", "machines", "expires"], rows)


@click.command()
@_target_options
@click.option("--expired", is_flag=True, help="Tear down every cluster whose ttl has passed.")
@click.option("--keep-local", is_flag=True, help="Keep the local PKI and keys of the cluster.")
@global_options
@handle_errors
def down(
    spec_path: Path,
    cluster_name: str | None,
    profile: str | None,
    provider: str,
    expired: bool,
    keep_local: bool,
) -> None:
    """Delete every VM, group, rule, key and affinity group of the cluster.

    Found by tags and names, with no local state. Asks first unless --yes. Running it
    twice is fine. --expired (the CI janitor) needs no spec: without -f it works in the
    cloud of --profile, else of the CLOUDSTACK_* variables or cloudstack.ini.
    JSON: docs/output.md#down.
    """
    from stackfleet.cli.progress import events
    from stackfleet.provisioners.down import down as run_down
    from stackfleet.provisioners.down import expired_clusters
    from stackfleet.provisioners.session import open_cloud

    if expired:
        name = ""  # the expired clusters are found in the cloud
        target, spec = _janitor_target(spec_path, cluster_name, profile, provider)
    else:
        name, target, spec = _resolve_target(spec_path, cluster_name, profile, provider)
    results = []
    with events() as shown, open_cloud(target, on_progress=shown.progress) as prov:
        names = expired_clusters(prov) if expired else [name]
        # A question to ask: only about a cluster that exists. (With --yes the cloud is
        # read once, under the lock, by the teardown itself.)
        asking = names and not expired and not settings().yes
        if asking and prov.live_state(name).is_empty():
            names = []
        if names:
            confirm(f"Delete cluster(s) {', '.join(names)} and everything in them?")
        for cluster in names:
            result = run_down(cluster, prov, shown, keep_local=keep_local)
            if not result.anything:
                note(f"cluster {cluster}: nothing to delete")
                continue
            results.append(result)
            if not keep_local:  # the cloud is empty now: so goes the cluster's stored PKI
                from stackfleet.statestore import forget

                forget(cluster, spec.state if spec else None)
        if not names and not expired:
            note(f"cluster {name}: nothing to delete")
    data = [
        {
            "cluster": r.cluster,
            "machines": r.machines,
            "groups": r.groups,
            "rules": r.rules,
            "keys": r.keys,
            "spread_groups": r.spread_groups,
        }
        for r in results
    ]
    rows = [(r.cluster, r.machines, r.groups, r.rules, r.keys, r.spread_groups) for r in results]
    emit(
        data,
        settings().output,
        "deleted",
        ["cluster", "vms", "groups", "rules", "keys", "affinity groups"],
        rows,
    )


def _janitor_target(
    spec_path: Path, cluster_name: str | None, profile: str | None, provider: str
) -> Any:
    """(CloudTarget, spec or None) for `down --expired`: the spec's cloud when -f names
    one (or ./stackfleet.yaml exists and no --profile is given), else the flags' cloud."""
    if cluster_name:
        raise BadInput(
            f"--expired finds the expired clusters itself: drop --cluster {cluster_name} "
            "(or drop --expired to delete that one cluster)"
        )
    if _given("spec_path") or (profile is None and spec_path.exists()):
        spec = load(spec_path)
        _no_provider_with_a_spec(spec)
        return _spec_target(spec, profile), spec
    return _flag_target(profile, provider), None
