"""`stackfleet ssh` through the system OpenSSH client, trusting only the pinned host key.

As docker-machine does: ssh(1) gives a real terminal (window size, escape keys), agent
forwarding and jump hosts, and streams both ways as the bytes come. What stackfleet adds is
the trust: a known_hosts file made for this one call holds only the host key stackfleet
generated for the node (keyed by the node's name through HostKeyAlias, so its address and
port do not matter), and StrictHostKeyChecking=yes refuses any other. The user's own
known_hosts, agent keys and agent forwarding are left out unless asked for.

ssh's own complaints go to a log file (-E) rather than the terminal, so that a failure
becomes one line; the remote command's stderr still streams to ours. With -v, ssh runs
with -v and speaks for itself.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from stackfleet.errors import CloudError
from stackfleet.provisioners.ssh_client import HostKeyMismatch

OPENSSH = "ssh"
# ssh's exit status when ssh itself failed (the remote command's status otherwise).
SSH_FAILED = 255


@dataclass(frozen=True)
class Hop:
    """One node to log in to: its name (the host key's alias), address and pinned key."""

    node: str
    address: str
    user: str
    host_key: str  # "ssh-ed25519 AAAA...", as stackfleet generated it
    port: int = 22


def find_openssh() -> str | None:
    return shutil.which(OPENSSH)


def known_hosts_text(hops: Sequence[Hop]) -> str:
    """One line per node: its name (the HostKeyAlias) and the key it must present."""
    return "".join(f"{hop.node} {' '.join(hop.host_key.split()[:2])}\n" for hop in hops)


def pinned_options(hop: Hop, key: Path, known_hosts: Path) -> list[str]:
    """The options that make ssh trust exactly the pinned key and offer exactly ours."""
    return [
        *("-o", "StrictHostKeyChecking=yes"),
        *("-o", f"UserKnownHostsFile={_quoted(known_hosts)}"),
        *("-o", "GlobalKnownHostsFile=/dev/null"),
        *("-o", f"HostKeyAlias={hop.node}"),
        *("-o", "UpdateHostKeys=no"),
        *("-o", "IdentitiesOnly=yes"),
        *("-i", str(key)),
        # The key has no passphrase: a prompt would mean something is wrong; never wait.
        *("-o", "BatchMode=yes"),
        *("-l", hop.user),
        *("-p", str(hop.port)),
    ]


def _quoted(path: Path) -> str:
    # An -o value is parsed as a config line: a path with a space needs quotes.
    return f'"{path}"' if " " in str(path) else str(path)


def ssh_argv(
    ssh: str,
    target: Hop,
    key: Path,
    known_hosts: Path,
    command: Sequence[str] = (),
    *,
    via_node: Hop | None = None,
    via_host: str | None = None,
    forward_agent: bool = False,
    tty: bool = False,
    verbose: int = 0,
    log: Path | None = None,
    netns: str | None = None,
) -> list[str]:
    """The full command line: `ip netns exec NS` when the node lives in a namespace,
    ssh with the pinned options, then the node's address and the remote command.

    A jump through one of the cluster's own nodes (`via_node`) is made with a
    ProxyCommand carrying the same pinned options (ProxyJump would check that node
    against the user's known_hosts); any other jump host (`via_host`, e.g.
    `admin@bastion.example.com`) goes to ProxyJump as given, checked by the user's own
    ssh config and known_hosts."""
    chatter = ["-" + "v" * min(verbose, 3)] if verbose else ["-o", "LogLevel=ERROR"]
    if log is not None and not verbose:
        chatter += ["-E", str(log)]
    argv = ["ip", "netns", "exec", netns] if netns else []
    argv += [ssh, *chatter, *pinned_options(target, key, known_hosts)]
    argv += ["-A"] if forward_agent else ["-o", "ForwardAgent=no"]
    if tty:
        argv.append("-t")
    if via_node is not None:
        proxy = [
            ssh,
            *chatter,
            *pinned_options(via_node, key, known_hosts),
            "-o",
            "ForwardAgent=no",
        ]
        proxy += ["-W", f"[{target.address}]:{target.port}", via_node.address]
        # ssh expands %-tokens in a ProxyCommand: a literal % (in a path) is written %%.
        argv += ["-o", "ProxyCommand=" + shlex.join(proxy).replace("%", "%%")]
    elif via_host is not None:
        argv += ["-J", via_host]
    return [*argv, target.address, *command]


@contextlib.contextmanager
def call_files(hops: Sequence[Hop]) -> Iterator[tuple[Path, Path]]:
    """(known_hosts, ssh's log): both 0600 in a 0700 temp dir that ends with the call."""
    with tempfile.TemporaryDirectory(prefix="stackfleet-ssh-") as scratch:
        known_hosts, log = Path(scratch) / "known_hosts", Path(scratch) / "ssh.log"
        for path, text in ((known_hosts, known_hosts_text(hops)), (log, "")):
            path.touch(mode=0o600)
            path.write_text(text)
        yield known_hosts, log


def run(argv: Sequence[str], target: Hop, log: Path | None) -> int:
    """Run ssh on our terminal (stdin, stdout and stderr passed through) and return the
    remote command's exit status. ssh's own failure is raised as one line."""
    try:
        proc = subprocess.Popen(argv)
    except FileNotFoundError:
        raise CloudError(f"{target.node}: cannot run {argv[0]}: it is not installed") from None
    try:
        # Ctrl-C at a terminal reaches ssh too (same process group), and ssh decides what
        # it means (at a remote shell it is the remote's); we wait for its answer.
        with _ignoring(signal.SIGINT, signal.SIGQUIT):
            code = proc.wait()
    finally:
        if proc.poll() is None:  # we were stopped (SIGTERM, SIGHUP): so is ssh
            proc.terminate()
            proc.wait()
    if code < 0:
        return 128 - code  # ssh was killed by a signal: as a shell reports it
    if code == SSH_FAILED and log is not None:
        failure = failure_line(log.read_text(), target)
        if failure is not None:
            raise failure
    return code


_CHANGED = re.compile(r"Host key for (\S+) has changed")


def failure_line(log_text: str, target: Hop) -> CloudError | None:
    """ssh's log made one line: what went wrong, for which node (None: ssh logged nothing,
    so the 255 was the remote command's own)."""
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("@")]  # the warning's banner
    if not lines:
        return None
    if any("Host key verification failed" in line for line in lines):
        changed = next((m.group(1) for line in lines if (m := _CHANGED.search(line))), None)
        return HostKeyMismatch(
            f"{changed or target.node}: presented a host key other than the one stackfleet "
            "generated for it; refusing to connect (the node was replaced, or this is not "
            "the node)"
        )
    return CloudError(f"{target.node}: {lines[-1]} (run with -v for ssh's own account)")


@contextlib.contextmanager
def _ignoring(*signums: int) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers (and receives the signals)
        return
    saved = {signum: signal.signal(signum, signal.SIG_IGN) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
