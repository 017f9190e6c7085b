"""`stackfleet state push|pull`: copy a cluster's PKI between the local folder and a store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from stackfleet.cli.common import (
    check_cluster_name,
    global_options,
    handle_errors,
    load,
    spec_option,
)
from stackfleet.cli.output import emit, note
from stackfleet.errors import BadInput


@click.group()
@global_options
def state() -> None:
    """Copy a cluster's PKI and tokens between $STACKFLEET_HOME and a state store.

    JSON of push and pull: docs/output.md#state-push-and-state-pull."""


def _where(spec_path: Path, cluster: str | None, store: str | None) -> tuple[str, str]:
    import os

    if cluster is None:
        spec = load(spec_path)
        cluster, store = spec.name, store or spec.state
    else:
        check_cluster_name(cluster)
    url = store or os.environ.get("STACKFLEET_STATE", "")
    if not url:
        raise BadInput(
            "state: no store named: pass --to/--from (e.g. s3://bucket/clusters or "
            "file:///srv/stackfleet), set the spec's `state:`, or STACKFLEET_STATE"
        )
    return cluster, url


def _changes(ours: dict[str, str], theirs: dict[str, str]) -> list[tuple[str, str]]:
    rows = []
    for rel in sorted(set(ours) | set(theirs)):
        if rel not in theirs:
            rows.append((rel, "add"))
        elif rel not in ours:
            rows.append((rel, "keep"))
        elif ours[rel] != theirs[rel]:
            rows.append((rel, "replace"))
    return rows


def _options(direction: str) -> Any:
    def wrap(func: Any) -> Any:
        func = click.option("--dry-run", is_flag=True, help="Show what would move; move nothing.")(
            func
        )
        func = click.option(
            f"--{direction}", "store", help="The store (default: the spec's state: or env)."
        )(func)
        func = click.option("--cluster", "cluster", help="Without a spec: the cluster's name.")(
            func
        )
        return spec_option(func)

    return wrap


@state.command()
@_options("to")
@global_options
@handle_errors
def push(spec_path: Path, cluster: str | None, store: str | None, dry_run: bool) -> None:
    """Copy the local PKI to the store (conditional on the version read; CAs never replaced)."""
    from stackfleet import statestore

    name, url = _where(spec_path, cluster, store)
    ours = statestore.local_files(name)
    if not ours:
        raise BadInput(f"cluster {name}: no local PKI to push (nothing in $STACKFLEET_HOME)")
    remote = statestore.connect(name, url)
    assert remote is not None
    theirs = remote.read() or {}
    if theirs and statestore.ca_fingerprints(theirs) != statestore.ca_fingerprints(ours):
        raise BadInput(f"{remote.where}: holds other CAs for {name}; it is not overwritten")
    rows = [(f, a) for f, a in _changes(ours, theirs) if a != "keep"]
    if not dry_run and rows:
        remote.write({**theirs, **ours})
    _report(name, remote.where, rows, dry_run, "push")


@state.command()
@_options("from")
@global_options
@handle_errors
def pull(spec_path: Path, cluster: str | None, store: str | None, dry_run: bool) -> None:
    """Copy the store's PKI into the local folder (replacing the local PKI)."""
    from stackfleet import statestore

    name, url = _where(spec_path, cluster, store)
    remote = statestore.connect(name, url)
    assert remote is not None
    theirs = remote.read()
    if theirs is None:
        raise BadInput(f"{remote.where}: no state for cluster {name}")
    ours = statestore.local_files(name)
    rows = [(f, {"keep": "remove"}.get(a, a)) for f, a in _changes(theirs, ours)]
    rows = [(f, a) for f, a in rows if a != "remove" or f.startswith(("pki/", "ssh/"))]
    if not dry_run and rows:
        statestore.write_local(name, theirs, replace=True)
    _report(name, remote.where, rows, dry_run, "pull")


def _report(name: str, where: str, rows: list[tuple[str, str]], dry_run: bool, verb: str) -> None:
    from stackfleet.cli.common import settings

    data = {
        "cluster": name,
        "store": where,
        "moved": [{"file": f, "action": a} for f, a in rows],
        "dry_run": dry_run,
    }
    if not rows:
        note(f"{verb}: {name} is the same on both sides: nothing to move")
    title = f"{verb} {name} {'(dry run) ' if dry_run else ''}{where}: {len(rows)} file(s)"
    emit(data, settings().output, title, ["file", "action"], rows)
