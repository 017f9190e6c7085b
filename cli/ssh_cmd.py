"""`stackfleet ssh NODE [-- CMD]`: a shell or a command on a node, host key pinned."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from stackfleet.cli.common import global_options, handle_errors, load, spec_option
from stackfleet.errors import NotFound


@click.command(context_settings={"ignore_unknown_options": True})
@spec_option
@click.argument("node")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--user", help="Login user (default: core on flatcar, ubuntu on ubuntu).")
@click.option("--port", type=int, default=22, show_default=True, help="SSH port.")
@global_options
@handle_errors
def ssh(spec_path: Path, node: str, command: tuple[str, ...], user: str | None, port: int) -> None:
    """Open a shell on NODE, or run COMMAND there and exit with its status.

    Uses the cluster's operator key and refuses any host key but the one stackfleet
    generated for NODE. Example: stackfleet ssh demo-etcd-1 -- systemctl status etcd
    """
    from stackfleet import state
    from stackfleet.cli.cluster_cmds import _spec_target
    from stackfleet.provisioners.reach import check_reachable
    from stackfleet.provisioners.session import open_cloud
    from stackfleet.provisioners.ssh_client import LOGIN_USERS, connect, run
    from stackfleet.provisioners.ssh_push import host_key
    from stackfleet.statestore import pull

    spec = load(spec_path)
    pull(spec.name, spec.state)  # the operator key and pinned host keys, from a state store
    with open_cloud(_spec_target(spec)) as prov:
        machines = {m.name: m for m in prov.live_state(spec.name).machines}
    machine = machines.get(node)
    if machine is None:
        known = ", ".join(sorted(machines)) or "none"
        raise NotFound(f"NODE: no node {node!r} in cluster {spec.name} (nodes: {known})")
    check_reachable([machine])
    address = machine.public_ip or machine.private_ip
    if not address:
        raise NotFound(f"{node}: has no IP yet (state {machine.state})")
    client = connect(
        address,
        user or LOGIN_USERS[spec.os],
        state.operator_ssh_key(spec.name).private_path,
        host_key(spec.name, node),
        port=port,
    )
    try:
        if command:
            code, out, err = run(client, " ".join(command))
            sys.stdout.write(out)
            sys.stderr.write(err)
            sys.exit(code)
        _interactive(client)
    finally:
        client.close()


def _interactive(client: Any) -> None:
    """A plain interactive shell: raw terminal, bytes copied both ways until it closes."""
    import os
    import select
    import termios
    import tty

    channel = client.invoke_shell(term=os.environ.get("TERM", "xterm"))
    stdin = sys.stdin.fileno()
    saved = termios.tcgetattr(stdin) if sys.stdin.isatty() else None
    try:
        if saved is not None:
            tty.setraw(stdin)
        while True:
            readable, _, _ = select.select([channel, stdin], [], [])
            if channel in readable:
                data = channel.recv(4096)
                if not data:
                    break
                os.write(sys.stdout.fileno(), data)
            if stdin in readable:
                data = os.read(stdin, 1024)
                if not data:
                    break
                channel.send(data)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
