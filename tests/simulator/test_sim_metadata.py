"""The metadata and password services answer each VM by its source address.

Real: Linux network namespaces and a veth pair per "VM" (needs root), with the VM's IP on
the namespace side and the router address (10.11.0.1, the basic zone's gateway) on the
host side, where the metadata server listens; real HTTP from inside each namespace.
Simulated: the VMs themselves (no guest OS; a Python client stands in for cloud-init).
Namespaces and links are always deleted in teardown.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest
from sim_apiclient import Api

from stackfleet.simulator import Simulator, SimulatorConfig

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2"
)
GATEWAY = "10.11.0.1"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def namespaces() -> Iterator[list[str]]:
    tag = str(os.getpid() % 100000)
    names = [f"sfsim{tag}a", f"sfsim{tag}b"]
    bridge = f"sfbr{tag}"
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{GATEWAY}/20", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for i, ns in enumerate(names):
            _ip("netns", "add", ns)
            host, guest = f"sfh{tag}{i}", f"sfg{tag}{i}"
            _ip("link", "add", host, "type", "veth", "peer", "name", guest)
            _ip("link", "set", host, "master", bridge, "up")
            _ip("link", "set", guest, "netns", ns)
            _ip("-n", ns, "link", "set", guest, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield names
    finally:
        for i, ns in enumerate(names):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            subprocess.run(["ip", "link", "del", f"sfh{tag}{i}"], capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)


def _fetch(ns: str, url: str, header: str | None = None) -> tuple[int, str]:
    # The stand-in for cloud-init retries a request that did not connect, for a bounded time,
    # as cloud-init's CloudStack datasource does (url_helper.wait_for_url): a guest asks before
    # its path to the router is certain. An HTTP answer, whatever its status, is final.
    code = (
        "import sys, time, urllib.request, urllib.error\n"
        "req = urllib.request.Request(sys.argv[1])\n"
        "if len(sys.argv) > 2: req.add_header('DomU_Request', sys.argv[2])\n"
        "deadline = time.monotonic() + 30\n"
        "while True:\n"
        "    try:\n"
        "        r = urllib.request.urlopen(req, timeout=5)\n"
        "        print(r.status); print(r.read().decode(), end=''); break\n"
        "    except urllib.error.HTTPError as e:\n"
        "        print(e.code); break\n"
        "    except OSError as e:\n"
        "        print(f'no answer yet: {e!r}', file=sys.stderr)\n"
        "        if time.monotonic() > deadline: raise\n"
        "        time.sleep(0.5)\n"
    )
    args = ["ip", "netns", "exec", ns, sys.executable, "-c", code, url]
    if header:
        args.append(header)
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{url} from {ns}: exit {done.returncode}\n{done.stderr}"
    status, _, body = done.stdout.partition("\n")
    return int(status), body


def test_each_vm_sees_its_own_metadata(namespaces: list[str]) -> None:
    cfg = SimulatorConfig(metadata_host=GATEWAY, metadata_port=0, password_port=0)
    with Simulator.start(cfg) as sim:
        api = Api(sim.endpoint, sim.api_key, sim.secret)
        vms = []
        for i, ns in enumerate(namespaces):
            data = base64.b64encode(f"#cloud-config\nhostname: node-{i}\n".encode()).decode()
            vm = api.deploy("sim-gva-1", name=f"node-{i}", userdata=data)
            ip = vm["nic"][0]["ipaddress"]
            guest = next(
                line.split(":")[1].strip().split("@")[0]
                for line in subprocess.run(
                    ["ip", "-n", ns, "-o", "link"], capture_output=True, text=True
                ).stdout.splitlines()
                if "sfg" in line
            )
            _ip("-n", ns, "addr", "add", f"{ip}/20", "dev", guest)
            vms.append(vm)
        base = sim.metadata_url
        assert base is not None
        for ns, vm in zip(namespaces, vms, strict=True):
            assert _fetch(ns, base + "meta-data/instance-id") == (200, vm["id"])
            assert _fetch(ns, base + "instance-id") == (200, vm["id"])  # short form
            assert _fetch(ns, base + "meta-data/local-ipv4") == (200, vm["nic"][0]["ipaddress"])
            assert _fetch(ns, base + "meta-data/availability-zone") == (200, "sim-gva-1")
            status, userdata = _fetch(ns, base + "user-data")
            assert status == 200 and userdata.endswith(f"hostname: {vm['name']}\n")
            status, keys = _fetch(ns, base + "meta-data/")
            assert "instance-id" in keys.splitlines() and "public-keys" in keys.splitlines()
            status, ident = _fetch(ns, base + "meta-data/cloud-identifier")
            assert ident.startswith("CloudStack-{") and ident.endswith("}")
            assert sim.password_url is not None
            assert _fetch(ns, sim.password_url, "send_my_password") == (200, "saved_password")
            assert _fetch(ns, sim.password_url, "nonsense") == (200, "bad_request")
