"""`stackfleet simulator serve`: run the CloudStack API simulator for any client.

The simulator is imported inside the command, so `stackfleet --help` stays fast.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import click


class ServeError(click.ClickException):
    """Bad option values or an unusable state file are bad input: exit 2, one line."""

    exit_code = 2


@click.group("simulator")
def simulator() -> None:
    """The embedded Apache CloudStack API simulator."""


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
    help="Accept this API key (default: the state file's, or a new random one).",
)
@click.option("--secret", default=None, help="Accept this secret key (default: as --api-key).")
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
) -> None:
    """Serve the CloudStack API until interrupted.

    Prints CLOUDSTACK_ENDPOINT, CLOUDSTACK_KEY and CLOUDSTACK_SECRET lines once it
    listens, so `eval "$(stackfleet simulator serve ... &)"`-style wrappers can point
    any CloudStack client at it.
    """
    import tempfile

    from stackfleet.errors import BadInput
    from stackfleet.simulator import Simulator, SimulatorConfig, parse_faults, parse_latency

    scratch = None
    if hypervisor == "qemu" and state is None:
        # The guests' router reads the VMs from a file: keep an in-memory cloud in a
        # scratch file, gone on exit like the guests.
        scratch = tempfile.TemporaryDirectory(prefix="stackfleet-sim-")
        state = Path(scratch.name) / "state.sqlite"
    try:
        cfg = SimulatorConfig(
            state_path=state,
            latency=parse_latency(latency),
            rtt=rtt,
            rate_limit=rate_limit,
            faults=parse_faults(faults, fault_commands) if faults else None,
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
    except BadInput as exc:
        raise ServeError(str(exc)) from None
    try:
        sim = Simulator.start(cfg)
    except BadInput as exc:
        raise ServeError(str(exc)) from None
    except OSError as exc:
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    done = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    click.echo(f"CLOUDSTACK_ENDPOINT={sim.endpoint}")
    click.echo(f"CLOUDSTACK_KEY={sim.api_key}")
    click.echo(f"CLOUDSTACK_SECRET={sim.secret}")
    if sim.metadata_url:
        click.echo(f"# metadata: {sim.metadata_url}")
    if sim.password_url:
        click.echo(f"# password server: {sim.password_url}")
    if sim.namespace:
        # Guests are reachable only inside this namespace; stackfleet dials them there.
        click.echo(f"STACKFLEET_NODE_NETNS={sim.namespace}")
    sys.stdout.flush()  # a parent reading our stdout needs the lines now
    try:
        done.wait()
    finally:
        sim.stop()
        if scratch is not None:
            scratch.cleanup()


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
