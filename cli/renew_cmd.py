"""`stackfleet renew`: reissue node certificates from the cluster's CAs and roll them out."""

from __future__ import annotations

import datetime as dt
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
from stackfleet.errors import BadInput
from stackfleet.roles import ETCD


@click.command()
@spec_option
@click.option(
    "--node",
    "nodes",
    multiple=True,
    metavar="NAME",
    help="Only this node (repeatable). Default: every node holding a certificate.",
)
@click.option(
    "--within",
    type=click.IntRange(min=0),
    default=None,
    metavar="DAYS",
    help="Only certificates that expire within DAYS (default: all of the nodes' certificates).",
)
@global_options
@handle_errors
def renew(spec_path: Path, nodes: tuple[str, ...], within: int | None) -> None:
    """Reissue the nodes' certificates from the same CAs and roll them out, node by node.

    Over SSH with the pinned host keys: push the new pair, restart the service that reads
    it, wait until the node is healthy (an etcd member: every member answers `endpoint
    health`) before the next. The CAs never change. Shows what it will do and asks,
    unless --yes. JSON: {"cluster", "renewed": [{"node", "certificate", "not_after"}]}.
    """
    from stackfleet import cert_expiry, state, statestore
    from stackfleet.cli.cluster_cmds import _spec_target
    from stackfleet.cli.progress import events
    from stackfleet.provisioners.base import MachineState
    from stackfleet.provisioners.reach import NothingRuns, check_reachable
    from stackfleet.provisioners.renew import LOCAL_STEMS, renew_local, rollout, steps_for
    from stackfleet.provisioners.session import open_cloud
    from stackfleet.provisioners.ssh_client import connect, login_user
    from stackfleet.provisioners.ssh_push import host_key

    spec = load(spec_path)
    remote = statestore.pull(spec.name, spec.state)
    certs = cert_expiry.read(spec.name) or []
    now = dt.datetime.now(dt.UTC)
    due = {c.stem: c for c in certs if c.renew_with == "stackfleet renew"}
    if within is not None:
        due = {s: c for s, c in due.items() if c.days_left(now) < within}
    with open_cloud(_spec_target(spec)) as prov:
        live = prov.live_state(spec.name)
        have = statestore.ca_fingerprints(statestore.local_files(spec.name))
        refused = statestore.pki_refusal(spec.name, have, live.tags, len(live.machines))
        if refused or not have:
            raise BadInput(refused or f"cluster {spec.name}: no PKI here and none on the cloud")
        known = {m.name for m in live.machines}
        unknown = [n for n in nodes if n not in known]
        if unknown:
            raise BadInput(
                f"--node {unknown[0]}: no such node in cluster {spec.name} (nodes: "
                f"{', '.join(sorted(known)) or 'none'})"
            )
        running = [m for m in live.machines if m.state == MachineState.RUNNING]
        chosen = [m for m in running if not nodes or m.name in nodes]
        steps = steps_for(chosen, sorted(due))
        local = [stem for stem in sorted(due) if stem in LOCAL_STEMS and not nodes]
        if not steps and not local:
            note(f"cluster {spec.name}: no certificate to renew")
            _report(spec.name, [], certs)
            return
        simulated = sorted(s.machine.name for s in steps if s.machine.simulated)
        if simulated:
            raise NothingRuns(
                f"renew: {', '.join(simulated)} are simulated VMs (hypervisor Simulator) that "
                "run nothing, so there is no node to roll new certificates out to; nothing "
                "was changed"
            )
        rows = [
            (s.machine.name, stem, due[stem].not_after.date().isoformat(), due[stem].days_left(now))
            for s in steps
            for stem in s.stems
        ]
        # What it will do, on stderr (stdout may be JSON), before asking.
        click.echo(f"renew for {spec.name}: one node at a time, in this order", err=True)
        for node, stem, expires, days in rows:
            click.echo(f"  {node:24} {stem:32} expires {expires} ({days} days)", err=True)
        for stem in local:
            click.echo(f"  {'(this machine)':24} {stem:32} reissued here only", err=True)
        count = len({r[1] for r in rows} | set(local))
        confirm(
            f"Reissue {count} certificate(s) and restart their services on {len(steps)} "
            "node(s), one at a time?"
        )
        members = [m for m in running if m.role == ETCD] if steps else []
        check_reachable([s.machine for s in steps] + members)
        key = state.operator_ssh_key(spec.name).private_path

        def ssh(machine: Any) -> Any:
            address = machine.public_ip or machine.private_ip or ""
            return connect(address, login_user(spec.os), key, host_key(spec.name, machine.name))

        pki = cert_expiry.pki_dir(spec.name)
        with events() as shown:
            result = rollout(steps, members, pki, ssh, shown, spec.timeout_s)
        result.renewed += [("", stem) for stem in renew_local(pki, local)]
    if remote is not None:
        statestore.push(remote)
    _report(spec.name, result.renewed, cert_expiry.read(spec.name) or [])


def _report(cluster: str, renewed: list[tuple[str, str]], certs: list[Any]) -> None:
    after = {c.stem: c for c in certs}
    items = [
        {
            "node": node or None,
            "certificate": stem,
            "not_after": after[stem].not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        for node, stem in renewed
    ]
    data = {"cluster": cluster, "renewed": items}
    rows = [(r["node"], r["certificate"], r["not_after"]) for r in items]
    if not rows and settings().output != "json":
        return  # "no certificate to renew" was said already
    emit(
        data,
        settings().output,
        f"renewed in {cluster}",
        ["node", "certificate", "valid until"],
        rows,
    )
