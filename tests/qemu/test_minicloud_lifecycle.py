"""`simulator serve --hypervisor qemu` cleans up after itself, and `simulator clean` after a crash.

Real: the simulator as a subprocess, QEMU guest processes (booted from the base image),
the guests' network namespace, dnsmasq and the router. The guests need not finish booting:
what is checked is that nothing they were given outlives the simulator.
Opt-in like the other mini-cloud tests (STACKFLEET_QEMU_TESTS=1).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_minicloud import SKIP, say

pytestmark = [pytest.mark.qemu, pytest.mark.timeout(600)]
if SKIP:
    pytestmark.append(pytest.mark.skip(reason=SKIP))


def _serve(state: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "stackfleet", "simulator", "serve", "--hypervisor", "qemu",
         "--port", "0", "--state", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    values: dict[str, str] = {}
    assert proc.stdout is not None
    while "STACKFLEET_NODE_NETNS" not in values:
        line = proc.stdout.readline()
        assert line, f"serve exited: {proc.stderr.read() if proc.stderr else ''}"
        if "=" in line and not line.startswith("#"):
            key, _, value = line.strip().partition("=")
            values[key] = value
    return proc, values


def _boot_one_guest(values: dict[str, str]) -> None:
    from stackfleet.provisioners.cloudstack.connection import CloudStackAPI
    from stackfleet.provisioners.cloudstack.credentials import Credentials

    api = CloudStackAPI(
        Credentials(
            values["CLOUDSTACK_ENDPOINT"],
            values["CLOUDSTACK_KEY"],
            values["CLOUDSTACK_SECRET"],
            "t",
        )
    )
    zone = next(z for z in api.call("listZones", {})["zone"] if z["name"] == "sim-gva-1")
    template = api.call("listTemplates", {"templatefilter": "executable", "zoneid": zone["id"]})
    offering = api.call("listServiceOfferings", {"name": "Small"})["serviceoffering"][0]
    job = api.call(
        "deployVirtualMachine",
        {
            "zoneid": zone["id"],
            "templateid": template["template"][0]["id"],
            "serviceofferingid": offering["id"],
            "name": "lifecycle-1",
        },
    )["jobid"]
    for _ in range(240):
        if api.call("queryAsyncJobResult", {"jobid": job})["jobstatus"] != 0:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("deploy never finished")
    vm = api.call("listVirtualMachines", {"name": "lifecycle-1"})["virtualmachine"][0]
    # The guest says where its address lives, so no client dials it from the host.
    assert vm["hypervisor"] == "KVM"
    assert vm["details"]["stackfleet:netns"] == values["STACKFLEET_NODE_NETNS"]


def _leftovers(namespace: str, runtime: Path) -> list[str]:
    from stackfleet.simulator.qemu.network import namespaces, pids_in

    found = []
    if namespace in namespaces():
        found.append(f"namespace {namespace} ({len(pids_in(namespace))} process(es))")
    found += [str(p) for p in runtime.glob("*.qcow2")] if runtime.exists() else []
    return found


@pytest.mark.parametrize("ending", ["sigterm", "sigkill-then-clean"])
def test_nothing_outlives_the_simulator(tmp_path: Path, ending: str) -> None:
    from stackfleet.simulator.qemu.image import ensure_base_image
    from stackfleet.simulator.qemu.network import pids_in

    ensure_base_image(say)
    state = tmp_path / "state.sqlite"
    proc, values = _serve(state)
    namespace = values["STACKFLEET_NODE_NETNS"]
    runtime = tmp_path / "qemu"
    try:
        _boot_one_guest(values)
        assert list(runtime.glob("*.qcow2")), "no guest disk was made"
        assert pids_in(namespace), "nothing runs in the guests' namespace"
        say(f"serve: a guest runs in {namespace}: {len(pids_in(namespace))} process(es)")
        if ending == "sigterm":
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
            assert _leftovers(namespace, runtime) == []
            say("serve stopped by SIGTERM: guests, overlays and namespace removed")
        else:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            assert _leftovers(namespace, runtime), "a killed simulator should leave its guests"
            cleaned = subprocess.run(
                [sys.executable, "-m", "stackfleet", "simulator", "clean"],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert cleaned.returncode == 0, cleaned.stderr
            assert f"removed {namespace}" in cleaned.stdout
            assert _leftovers(namespace, runtime) == []
            say(f"serve killed: `simulator clean` said {cleaned.stdout.strip()!r}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        subprocess.run([sys.executable, "-m", "stackfleet", "simulator", "clean"],
                       capture_output=True, timeout=120)  # fmt: skip
