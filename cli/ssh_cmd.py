"""`stackfleet ssh NODE [-- CMD]`: a shell or a command on a node, host key pinned.

The system OpenSSH client does the talking (provisioners/openssh.py), as docker-machine
does: a real terminal, agent forwarding, jump hosts, output as it comes. paramiko stands
in only where no `ssh` is installed.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from stackfleet.cli.common import (
    DEFAULT_SPEC,
    global_options,
    handle_errors,
    load,
    settings,
    spec_option,
)
from stackfleet.errors import CloudError, NotFound


def complete_node(ctx: click.Context, incomplete: str) -> list[str]:
    """Shell completion of NODE: the spec's node names, short (etcd-1) and without a
    cloud call, so a TAB is instant and works offline. A spec that does not load
    completes nothing rather than printing an error into the shell."""
    from stackfleet.spec import load_spec

    path = ctx.params.get("spec_path") or Path(DEFAULT_SPEC)
    try:
        spec = load_spec(Path(path))
    except Exception:  # completion must never fail loudly
        return []
    prefix = f"{spec.name}-"
    short = [name.removeprefix(prefix) for name, _role in spec.machine_names()]
    return [name for name in short if name.startswith(incomplete)]


@click.command(context_settings={"ignore_unknown_options": True})
@spec_option
@click.argument(
    "node", shell_complete=lambda ctx, param, incomplete: complete_node(ctx, incomplete)
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--user", help="Login user (default: core on flatcar, ubuntu on ubuntu).")
@click.option("--port", type=int, default=22, show_default=True, help="SSH port.")
@click.option(
    "--jump",
    metavar="HOST",
    help="Go through HOST: one of the cluster's nodes (its pinned key), or "
    "[user@]host[:port] of a bastion (ssh's ProxyJump, checked by your own ssh config).",
)
@click.option(
    "-A",
    "--forward-agent",
    is_flag=True,
    help="Forward your ssh-agent to the node (off unless asked; only to nodes you trust).",
)
@global_options
@handle_errors
def ssh(
    spec_path: Path,
    node: str,
    command: tuple[str, ...],
    user: str | None,
    port: int,
    jump: str | None,
    forward_agent: bool,
) -> None:
    """Open a shell on NODE, or run COMMAND there and exit with its status.

    NODE is a node's name, with or without the cluster's prefix (etcd-1 or demo-etcd-1).
    Uses the cluster's operator key and refuses any host key but the one stackfleet
    generated for the node. Put `--` before a COMMAND that has options of its own.
    Example: stackfleet ssh etcd-1 -- systemctl status etcd
    """
    from stackfleet import state
    from stackfleet.cli.cluster_cmds import _spec_target
    from stackfleet.provisioners.openssh import Hop, find_openssh
    from stackfleet.provisioners.reach import check_reachable
    from stackfleet.provisioners.session import open_cloud
    from stackfleet.provisioners.ssh_client import login_user
    from stackfleet.provisioners.ssh_push import host_key
    from stackfleet.statestore import pull

    spec = load(spec_path)
    pull(spec.name, spec.state)  # the operator key and pinned host keys, from a state store
    with open_cloud(_spec_target(spec)) as prov:
        machines = {m.name: m for m in prov.live_state(spec.name).machines}
    machine = find_node(node, spec.name, machines, "NODE")
    via = find_node(jump, spec.name, machines, "--jump", required=False) if jump else None
    check_reachable([machine] if via is None else [machine, via])
    login = user or login_user(spec.os)

    def hop(m: Any, port: int) -> Hop:
        address = m.public_ip or m.private_ip
        if not address:
            raise NotFound(f"{m.name}: has no IP yet (state {m.state})")
        return Hop(m.name, address, login, host_key(spec.name, m.name), port)

    target = hop(machine, port)
    via_node = hop(via, 22) if via is not None else None
    key = state.operator_ssh_key(spec.name).private_path
    openssh = find_openssh()
    if openssh is None:
        if jump or forward_agent:
            raise CloudError("--jump and -A need the OpenSSH client (`ssh`), not installed here")
        sys.exit(_with_paramiko(target, key, command))
    sys.exit(_with_openssh(openssh, target, via_node, jump, key, command, forward_agent))


def find_node(
    name: str, cluster: str, machines: Mapping[str, Any], what: str, required: bool = True
) -> Any:
    """The machine called `name`, or `<cluster>-<name>` (etcd-1 for demo-etcd-1)."""
    for candidate in (name, f"{cluster}-{name}"):
        if candidate in machines:
            return machines[candidate]
    if not required:
        return None
    short = sorted(m.removeprefix(f"{cluster}-") for m in machines)
    raise NotFound(
        f"{what}: no node {name!r} in cluster {cluster} "
        f"(nodes: {', '.join(short) or 'none'}; e.g. {short[0] if short else 'etcd-1'})"
    )


def _with_openssh(
    openssh: str,
    target: Any,
    via_node: Any,
    jump: str | None,
    key: Path,
    command: tuple[str, ...],
    forward_agent: bool,
) -> int:
    from stackfleet.provisioners import openssh as o
    from stackfleet.provisioners import reach

    netns = reach.namespace()
    if netns is None and reach._confined:
        # The embedded simulator's addresses are reachable inside its guests' namespace
        # or nowhere; ssh must not try them on the host's network.
        raise reach.NothingRuns(
            f"{target.node}: the simulator's VMs are reachable only inside its guests' "
            "network namespace, and this simulator runs no guests (hypervisor Simulator)"
        )
    hops = [target] if via_node is None else [target, via_node]
    with o.call_files(hops) as (known_hosts, log):
        argv = o.ssh_argv(
            openssh,
            target,
            key,
            known_hosts,
            command,
            via_node=via_node,
            via_host=jump if via_node is None else None,
            forward_agent=forward_agent,
            tty=not command and sys.stdin.isatty(),
            verbose=settings().verbose,
            log=log,
            netns=netns,
        )
        return o.run(argv, target, log)


def _with_paramiko(target: Any, key: Path, command: tuple[str, ...]) -> int:
    """No OpenSSH client here: paramiko, with a plain raw-terminal shell."""
    from stackfleet.provisioners.ssh_client import connect, run

    client = connect(target.address, target.user, key, target.host_key, port=target.port)
    try:
        if command:
            code, out, err = run(client, " ".join(command))
            sys.stdout.write(out)
            sys.stderr.write(err)
            return code
        _interactive(client)
        return 0
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
