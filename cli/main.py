"""The `stackfleet` command group.

Subcommands are loaded lazily by name, so `stackfleet --help` imports none of
libcloud, cryptography, paramiko or jinja2 (a test checks this).
"""

from __future__ import annotations

import importlib
import sys

import click

from stackfleet import __version__
from stackfleet.cli.common import global_options

# name -> ("module:attribute", one-line help). The group's --help is drawn from this
# table, so listing commands imports none of their modules.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("stackfleet.cli.spec_cmds:init", "Write a commented cluster spec to start from."),
    "validate": ("stackfleet.cli.spec_cmds:validate", "Check a spec and all it renders."),
    "schema": ("stackfleet.cli.spec_cmds:schema", "Print the spec's JSON Schema."),
    "render": ("stackfleet.cli.spec_cmds:render", "Show the cloud-config each node gets."),
    "plan": ("stackfleet.cli.cluster_cmds:plan", "Show what `up` would create, change or delete."),
    "up": ("stackfleet.cli.cluster_cmds:up", "Create or repair the cluster to match the spec."),
    "status": ("stackfleet.cli.cluster_cmds:status", "Show the nodes as the cloud has them."),
    "list": ("stackfleet.cli.cluster_cmds:list_clusters", "List the clusters in the account."),
    "down": ("stackfleet.cli.cluster_cmds:down", "Delete everything tagged with the cluster."),
    "ssh": ("stackfleet.cli.ssh_cmd:ssh", "Open a shell or run a command on a node."),
    "kubeconfig": (
        "stackfleet.cli.kubeconfig_cmd:kubeconfig",
        "Write or merge the cluster's admin kubeconfig.",
    ),
    "state": ("stackfleet.cli.state_cmds:state", "Push or pull the PKI to/from a state store."),
    "renew": ("stackfleet.cli.renew_cmd:renew", "Reissue node certificates and roll them out."),
    "simulator": ("stackfleet.cli.simulator_cmd:simulator", "Run the CloudStack API simulator."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in self.list_commands(ctx)])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attr = entry[0].split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="stackfleet")
@global_options
def cli() -> None:
    """Stand up TLS etcd + Kubernetes clusters on Apache CloudStack, and tear them down.

    The options below are accepted before or after the command: `stackfleet -o json
    status` and `stackfleet status -o json` are the same.

    Exit codes: 0 ok; 1 the cloud or the cluster failed; 2 bad input (spec, flags,
    credentials); 130 interrupted by SIGINT or SIGHUP, 143 by SIGTERM (run the same
    command again to continue).
    """


def run(argv: list[str] | None = None) -> int:
    """Entry point: runs the group and returns the exit code.

    SIGTERM (a CI runner cancelling the job) and SIGHUP stop the run as Ctrl-C does: at
    the point the main thread was, the engine's clean-up (the lock's release) runs, one
    "interrupted" line is printed, exit 130 (SIGINT, SIGHUP) or 143 (SIGTERM)."""
    from stackfleet.cli.common import install_signal_handlers

    install_signal_handlers()
    try:
        cli.main(args=argv, prog_name="stackfleet", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
