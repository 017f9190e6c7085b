"""`stackfleet simulator serve|env|stop|clean|image`: the CloudStack API simulator for any client.

`serve --detach` starts the server in the background and `env` prints its credentials as
`export` lines; simulator/detach.py keeps its files. The simulator is imported inside the
commands, so `stackfleet --help` stays fast.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TypeVar

import click

from stackfleet.cli.common import global_options, handle_errors, settings

if TYPE_CHECKING:
    from stackfleet.simulator.app import Simulator
    from stackfleet.simulator.detach import Files, Record
    from stackfleet.simulator.serving import StopOnExit

# A started simulator of either API.
S = TypeVar("S", bound="StopOnExit")

# How long `serve --detach` waits for the server to listen (a QEMU mini-cloud first starts
# its router and network namespace).
DETACH_START_S = 120.0


class ServeError(click.ClickException):
    """Bad option values or an unusable state file are bad input: exit 2, one line."""

    exit_code = 2


class DetachError(click.ClickException):
    """A detached server that runs already, or did not start: exit 1, one line."""

    exit_code = 1


@click.group("simulator")
def simulator() -> None:
    """The embedded API simulators: Apache CloudStack, and exoscale API v2 (--api exoscale)."""


@simulator.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the API listens on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="API port; 0 picks a free one (printed in CLOUDSTACK_ENDPOINT).",
)
@click.option(
    "--state",
    "state",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite state file, shareable by several processes; omit to keep the cloud in memory.",
)
@click.option(
    "--latency",
    default="default=0",
    show_default=True,
    help="Seconds each async job takes: 'deployVirtualMachine=20,"
    "startVirtualMachine=10,default=1' (a bare number sets the default).",
)
@click.option(
    "--rtt",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="Seconds added to every API answer (network round trip).",
)
@click.option(
    "--rate-limit",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Requests per second per account; beyond it HTTP 429 as CloudStack's "
    "api.throttling answers.",
)
@click.option(
    "--faults",
    default=None,
    help="Seeded fault injection: 'http5xx=0.05,drop=0.02,jobfail=0.05,slow=0.1,"
    "seed=42' (probabilities 0..1; slow = job latency x10).",
)
@click.option(
    "--fault-commands",
    default=None,
    help="Comma-separated commands the faults apply to (default: all).",
)
@click.option(
    "--vm-limit",
    type=click.IntRange(0),
    default=20,
    show_default=True,
    help="The account's max.account.user.vms (deploys beyond it fail with 535).",
)
@click.option(
    "--hosts",
    type=click.IntRange(1),
    default=4,
    show_default=True,
    help="Hosts per zone, for host (anti-)affinity placement.",
)
@click.option(
    "--userdata-max-length",
    type=click.IntRange(1),
    default=32768,
    show_default=True,
    help="vm.userdata.max.length: base64 characters accepted.",
)
@click.option(
    "--api-key",
    default=None,
    envvar="STACKFLEET_SIMULATOR_API_KEY",
    help="Accept this API key (default: the state file's, or a new random one). "
    "Env: STACKFLEET_SIMULATOR_API_KEY.",
)
@click.option(
    "--secret",
    default=None,
    envvar="STACKFLEET_SIMULATOR_SECRET",
    help="Accept this secret key (default: as --api-key). Env: STACKFLEET_SIMULATOR_SECRET "
    "(keeps it out of the process list).",
)
@click.option(
    "--request-log",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Append one JSON line per request here (secrets removed; file is 0600).",
)
@click.option(
    "--metadata-host",
    default="127.0.0.1",
    show_default=True,
    help="Address of the metadata/password servers (e.g. a guest's gateway).",
)
@click.option(
    "--metadata-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve the VMs' metadata (/latest/...) on this port; 0 picks one.",
)
@click.option(
    "--password-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve the VR password protocol (port 8080 on a real router) here.",
)
@click.option(
    "--hypervisor",
    type=click.Choice(["simulator", "qemu"]),
    default=None,
    help="Who runs the VMs: nobody (simulator, the default) or QEMU guests in a network "
    "namespace, booted from a Debian image that stands in for the ubuntu flavor. Needs root.",
)
@click.option(
    "--mirror",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="With --hypervisor qemu: a folder the guests' router serves at "
    "http://<gateway>:8090/ (an artifacts.base_url for clouds with no internet).",
)
@click.option(
    "--api",
    type=click.Choice(["cloudstack", "exoscale"]),
    default="cloudstack",
    show_default=True,
    help="Which API to serve: Apache CloudStack's, or exoscale's API v2 (built from the "
    "OpenAPI spec the `exoscale` client ships; --latency's default is how long its "
    "operations stay pending).",
)
@click.option(
    "--detach",
    is_flag=True,
    help="Run in the background (pid file and log in the state dir) and return once it "
    "answers; `simulator env` prints its credentials, `simulator stop` ends it.",
)
def serve(
    host: str,
    port: int,
    state: Path | None,
    latency: str,
    rtt: float,
    rate_limit: float | None,
    faults: str | None,
    fault_commands: str | None,
    vm_limit: int,
    hosts: int,
    userdata_max_length: int,
    api_key: str | None,
    secret: str | None,
    request_log: Path | None,
    metadata_host: str,
    metadata_port: int | None,
    password_port: int | None,
    hypervisor: str | None,
    mirror: Path | None,
    api: str,
    detach: bool,
) -> None:
    """Serve the CloudStack API (or, with --api exoscale, exoscale's) until SIGINT/SIGTERM.

    In the foreground it prints CLOUDSTACK_ENDPOINT=, CLOUDSTACK_KEY= and
    CLOUDSTACK_SECRET= lines (a dotenv file) once it listens; with --api exoscale,
    EXOSCALE_API_ENDPOINT=, EXOSCALE_API_KEY= and EXOSCALE_API_SECRET= (the official
    client takes the endpoint as `url=`). With --detach it runs in the background:
    `eval "$(stackfleet simulator env)"` then points any client at it, and
    `stackfleet simulator stop` ends it.
    """
    from stackfleet.errors import BadInput
    from stackfleet.simulator import parse_faults, parse_latency

    try:
        latencies = parse_latency(latency)
        fault_config = parse_faults(faults, fault_commands) if faults else None
    except BadInput as exc:
        raise ServeError(str(exc)) from None
    if api == "exoscale":
        _refuse_cloudstack_options(click.get_current_context())
    if detach:
        _start_detached(click.get_current_context())
        return
    import tempfile

    from stackfleet.simulator import Simulator, SimulatorConfig
    from stackfleet.simulator import detach as detached

    # Set only in the child of `serve --detach`: it reports to those files, and its
    # output (a log file) never holds the secret.
    reporting = os.environ.pop(detached.CHILD_ENV, None)
    where = detached.files(Path(reporting)) if reporting else None
    try:
        claimed = detached.claim(where) if where else None
    except detached.AlreadyRunning as exc:
        raise DetachError(str(exc)) from None
    if api == "exoscale":
        try:
            _serve_exoscale(
                host, port, state, latencies["default"], api_key, secret, request_log, where
            )
        finally:
            if where is not None and claimed is not None:
                detached.release(where, claimed)
        return
    scratch = None
    if hypervisor == "qemu" and state is None:
        # The guests' router reads the VMs from a file: keep an in-memory cloud in a
        # scratch file, gone on exit like the guests.
        scratch = tempfile.TemporaryDirectory(prefix="stackfleet-sim-")
        state = Path(scratch.name) / "state.sqlite"
    try:
        cfg = SimulatorConfig(
            state_path=state,
            latency=latencies,
            rtt=rtt,
            rate_limit=rate_limit,
            faults=fault_config,
            vm_limit=vm_limit,
            hosts=hosts,
            api_key=api_key,
            secret=secret,
            request_log=request_log,
            host=host,
            port=port,
            metadata_port=metadata_port,
            metadata_host=metadata_host,
            password_port=password_port,
            userdata_max_length=userdata_max_length,
            hypervisor=hypervisor,
            mirror=mirror.resolve() if mirror else None,
        )
        _serve_until_stopped(
            lambda: Simulator.start(cfg), f"{host}:{port}", lambda sim: _announce(sim, where)
        )
    finally:
        if scratch is not None:
            scratch.cleanup()
        if where is not None and claimed is not None:
            detached.release(where, claimed)


def _serve_until_stopped(
    start: Callable[[], S], address: str, announce: Callable[[S], None]
) -> None:
    """Start a simulator (one line if it cannot), announce it, serve until SIGTERM or SIGINT,
    then stop it."""
    from stackfleet.errors import BadInput

    try:
        sim = start()
    except BadInput as exc:
        raise ServeError(str(exc)) from None
    except OSError as exc:
        raise ServeError(f"cannot listen on {address}: {exc.strerror}") from None
    done = threading.Event()

    def on_stop_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_stop_signal)
    signal.signal(signal.SIGINT, on_stop_signal)
    try:
        announce(sim)
        done.wait()
    finally:
        sim.stop()


def _hand_over(record: Record, where: Files | None) -> None:
    """Foreground: the dotenv lines on stdout. Detached: the record, and no secret."""
    from stackfleet.simulator.detach import publish

    if where is None:
        for name, value in environment(record).items():
            click.echo(f"{name}={value}")
    else:
        publish(where, record)
        click.echo(f"listening on {record.endpoint} (pid {record.pid})")


def _announce(sim: Simulator, where: Files | None) -> None:
    """The CloudStack simulator's record, and where its metadata and password servers are."""
    from stackfleet.simulator.detach import Record

    record = Record(
        pid=os.getpid(),
        endpoint=sim.endpoint,
        api_key=sim.api_key,
        secret=sim.secret,
        node_netns=sim.namespace,
        metadata_url=sim.metadata_url,
        password_url=sim.password_url,
    )
    _hand_over(record, where)
    if where is not None and sim.namespace:
        click.echo(f"STACKFLEET_NODE_NETNS={sim.namespace}")
    if sim.metadata_url:
        click.echo(f"# metadata: {sim.metadata_url}")
    if sim.password_url:
        click.echo(f"# password server: {sim.password_url}")
    sys.stdout.flush()  # a parent reading our stdout needs the lines now


# Options that only the CloudStack simulator has; refused with --api exoscale.
CLOUDSTACK_ONLY = (
    "rate_limit",
    "faults",
    "fault_commands",
    "metadata_port",
    "password_port",
    "hypervisor",
    "mirror",
)


def _refuse_cloudstack_options(ctx: click.Context) -> None:
    for name in CLOUDSTACK_ONLY:
        if ctx.params.get(name) is not None:
            option = "--" + name.replace("_", "-")
            raise ServeError(f"{option} is for --api cloudstack; drop it or serve CloudStack")


def _serve_exoscale(
    host: str,
    port: int,
    state: Path | None,
    latency: float,
    api_key: str | None,
    secret: str | None,
    request_log: Path | None,
    where: Files | None,
) -> None:
    from stackfleet.simulator.detach import Record
    from stackfleet.simulator.exoscale import ExoscaleConfig, ExoscaleSimulator

    cfg = ExoscaleConfig(
        state_path=state,
        request_log=request_log,
        host=host,
        port=port,
        operation_latency=latency,
        api_key=api_key,
        secret=secret,
    )

    def announce(sim: ExoscaleSimulator) -> None:
        _hand_over(Record(os.getpid(), sim.endpoint, sim.api_key, sim.secret), where)
        click.echo(f"# zone: {sim.zone}; python: Client(key, secret, url=EXOSCALE_API_ENDPOINT)")
        sys.stdout.flush()  # a parent reading our stdout needs the lines now

    _serve_until_stopped(lambda: ExoscaleSimulator.start(cfg), f"{host}:{port}", announce)


def environment(record: Record) -> dict[str, str]:
    """The variables a client reads. The endpoint's path tells the API: exoscale's is /v2,
    CloudStack's /client/api."""
    from urllib.parse import urlsplit

    if urlsplit(record.endpoint).path.rstrip("/") == "/v2":
        return {
            "EXOSCALE_API_ENDPOINT": record.endpoint,
            "EXOSCALE_API_KEY": record.api_key,
            "EXOSCALE_API_SECRET": record.secret,
        }
    return record.environment()


def _start_detached(ctx: click.Context) -> None:
    """Start `serve` again as a child in its own session, wait until it answers, return."""
    from stackfleet.simulator import detach as detached

    where = detached.files()
    pid = detached.running_pid(where)
    if pid is not None:
        raise DetachError(
            f"a detached simulator runs already (pid {pid}); `stackfleet simulator stop` "
            "ends it, `stackfleet simulator env` prints its credentials"
        )
    detached.remove_stale(where)
    env = {**os.environ, detached.CHILD_ENV: str(where.directory)}
    for name, variable in (
        ("api_key", "STACKFLEET_SIMULATOR_API_KEY"),
        ("secret", "STACKFLEET_SIMULATOR_SECRET"),
    ):
        if ctx.params.get(name) is not None:
            env[variable] = ctx.params[name]  # the environment, not argv: `ps` shows argv
    log = os.open(where.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(log, 0o600)
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "stackfleet", "simulator", "serve", *_child_args(ctx)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            cwd=where.directory,
            start_new_session=True,  # no terminal: a closed shell or Ctrl-C leaves it be
        )
    finally:
        os.close(log)
    record = _wait_for_record(where, child)
    _wait_until_answers(record.endpoint)
    click.echo(f"simulator running in the background (pid {record.pid}): {record.endpoint}")
    click.echo(
        'eval "$(stackfleet simulator env)" points clients at it; '
        f"`stackfleet simulator stop` ends it; log: {where.log}"
    )


def _child_args(ctx: click.Context) -> list[str]:
    """The options given, for the child: paths made absolute (it runs elsewhere), the
    credentials left out (they go by environment)."""
    args: list[str] = []
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name in {"detach", "api_key", "secret"}:
            continue
        value = ctx.params.get(param.name or "")
        if value is None:
            continue
        if isinstance(value, Path):
            value = value.expanduser().resolve()
        args += [param.opts[0], str(value)]
    return args


def _wait_for_record(where: Files, child: subprocess.Popen[bytes]) -> Record:
    from stackfleet.simulator.detach import NotRunning, current

    deadline = time.monotonic() + DETACH_START_S
    while True:
        code = child.poll()
        if code is not None:
            why = f"the simulator did not start: {_last_line(where.log)}"
            raise ServeError(why) if code == 2 else DetachError(why)  # bad input stays 2
        try:
            record = current(where)
        except NotRunning:
            record = None
        if record is not None and record.pid == child.pid:
            return record
        if time.monotonic() > deadline:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            raise DetachError(
                f"the simulator did not listen within {DETACH_START_S:.0f} s; see {where.log}"
            )
        time.sleep(0.05)


def _wait_until_answers(endpoint: str) -> None:
    """One HTTP answer (any status) from the API on loopback. Other addresses are not
    dialled: the record is written once the server listens, which is enough there."""
    import http.client
    from urllib.parse import urlsplit

    url = urlsplit(endpoint)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(url.hostname or "", url.hostname or "")
    if host not in {"127.0.0.1", "::1", "localhost"} and not host.startswith("127."):
        return
    deadline = time.monotonic() + 10
    while True:
        # http.client, not urllib: no proxy from the environment may carry this away.
        conn = http.client.HTTPConnection(host, url.port, timeout=2)
        try:
            conn.request("GET", url.path)
            conn.getresponse().read()
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise DetachError(f"the simulator at {endpoint} does not answer: {exc}") from None
            time.sleep(0.1)
        finally:
            conn.close()


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    last = lines[-1] if lines else "it exited without a word"
    return last.removeprefix("Error: ")


@simulator.command("env")
@global_options
@handle_errors
def env() -> None:
    """Print `export CLOUDSTACK_...` (or EXOSCALE_API_...) lines for the detached server.

    `eval "$(stackfleet simulator env)"`; no server running: one line, exit 1. The lines
    hold the API secret: that is the point of the command. JSON: the same variables as one
    object.
    """
    import json
    import shlex

    from stackfleet.simulator.detach import current, files

    variables = environment(current(files()))
    if settings().output == "json":
        click.echo(json.dumps(variables, indent=2))
        return
    for name, value in variables.items():
        click.echo(f"export {name}={shlex.quote(value)}")


@simulator.command("stop")
@global_options
@handle_errors
def stop() -> None:
    """End the detached server: SIGTERM, its clean-up, SIGKILL after 30 s. Exit 0 also
    when none runs. JSON: {"pid", "stopped", "killed"}."""
    import json

    from stackfleet.simulator.detach import STOP_GRACE_S, files
    from stackfleet.simulator.detach import stop as stop_server

    result = stop_server(files())
    if settings().output == "json":
        data = {"pid": result.pid, "stopped": result.pid is not None, "killed": result.killed}
        click.echo(json.dumps(data, indent=2))
    elif result.pid is None:
        click.echo("no detached simulator was running")
    elif result.killed:
        click.echo(
            f"the simulator (pid {result.pid}) ignored SIGTERM for {STOP_GRACE_S:.0f} s and "
            "was killed; `stackfleet simulator clean` removes QEMU guests it may have left"
        )
    else:
        click.echo(f"simulator stopped (pid {result.pid})")


@simulator.command("clean")
@click.option("--all", "everything", is_flag=True, help="Also remove running simulators' guests.")
def clean(everything: bool) -> None:
    """Remove what a crashed QEMU mini-cloud left: guests, overlays, namespaces, router.

    Finds every `sfsim-*` network namespace and every mini-cloud this machine registered,
    kills what runs inside, and deletes them with the guests' disks. A mini-cloud whose
    `simulator serve` is still running is kept unless --all.
    """
    from stackfleet.simulator.qemu.hypervisor import clean as clean_all

    found = clean_all(click.echo, everything)
    click.echo(f"{found} mini-cloud(s) removed" if found else "nothing to clean")


@simulator.command("image")
def image() -> None:
    """Build (once, then cached) the QEMU guests' base image and print where it is.

    A Debian system from Debian's packages with cloud-init (CloudStack datasource first),
    systemd, containerd and sshd: it stands in for the ubuntu flavor. Cached by a hash of
    its build script under $STACKFLEET_IMAGE_CACHE (default ~/.cache/stackfleet/images).
    """
    from stackfleet.simulator.qemu.image import ensure_base_image, qemu_accel

    built = ensure_base_image(click.echo)
    accel, why = qemu_accel()
    click.echo(f"image: {built.directory}")
    click.echo(f"accelerator: {accel} ({why})")
