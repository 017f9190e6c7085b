"""`stackfleet kubeconfig`: stdout, a merge that kubectl reads back, the server address,
and the admin certificate kept between calls.

Real: the CLI in-process, the embedded simulator (HTTP on loopback, signed requests,
SQLite state), the cluster's PKI as `up` made it, Debian's kubectl (client only: `kubectl
config`, which reads and writes kubeconfig files; no API server runs). Simulated: the VMs.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from sf_testkit import REPO, Workspace

from stackfleet.kubeconfig import still_good
from stackfleet.pki import CertKey

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
SMALL = {"etcd": {"count": 1}, "control": {"count": 1}, "workers": {"count": 0}}


@pytest.fixture
def cluster(ws: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Path, str]:
    monkeypatch.chdir(tmp_path)
    spec = ws.spec("kcfg", roles=SMALL)
    up = ws.run("up", "-f", str(spec), "-o", "json")
    assert up.exit_code == 0, up.stderr
    control = next(n["ip"] for n in up.json()["status"]["nodes"] if n["role"] == "control")
    return spec, control


def kubectl(kubeconfig: Path, *args: str) -> str:
    out = subprocess.run(
        [KUBECTL, "config", *args],
        env={"KUBECONFIG": str(kubeconfig), "HOME": str(kubeconfig.parent)},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


def client_cert(doc: dict[str, Any], user: str) -> x509.Certificate:
    entry = next(u for u in doc["users"] if u["name"] == user)
    data = entry["user"]["client-certificate-data"]
    return x509.load_pem_x509_certificate(base64.b64decode(data))


@pytest.mark.skipif(not Path(KUBECTL).exists(), reason="kubectl (kubernetes-client) not installed")
def test_merge_keeps_the_other_context_as_kubectl_reads_it(
    ws: Workspace, cluster: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, control_ip = cluster
    config = tmp_path / "kube" / "config"
    config.parent.mkdir()
    config.touch(mode=0o644)
    kubectl(config, "set-cluster", "other", "--server=https://198.51.100.9:6443")
    kubectl(config, "set-credentials", "other-user", "--token=not-a-real-token")
    kubectl(config, "set-context", "other", "--cluster=other", "--user=other-user")
    kubectl(config, "use-context", "other")
    monkeypatch.setenv("KUBECONFIG", f"{config}:{tmp_path / 'second-file'}")

    result = ws.run("kubeconfig", "-f", str(spec), "--merge")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(config)
    again = ws.run("kubeconfig", "-f", str(spec), "--merge")  # twice: still one entry each
    assert again.exit_code == 0, again.stderr

    view = json.loads(kubectl(config, "view", "-o", "json"))
    assert sorted(c["name"] for c in view["contexts"]) == ["kcfg", "other"]
    assert sorted(c["name"] for c in view["clusters"]) == ["kcfg", "other"]
    assert sorted(u["name"] for u in view["users"]) == ["kcfg-admin", "other-user"]
    assert kubectl(config, "current-context").strip() == "kcfg"
    ours = next(c for c in view["clusters"] if c["name"] == "kcfg")["cluster"]
    assert ours["server"] == f"https://{control_ip}:6443"  # the simulator has no public IP
    raw = json.loads(kubectl(config, "view", "--raw", "-o", "json"))
    admin = client_cert(raw, "kcfg-admin")
    ca = x509.load_pem_x509_certificate(
        (ws.home / "clusters" / "kcfg" / "pki" / "kube-ca.crt").read_bytes()
    )
    admin.verify_directly_issued_by(ca)
    other = next(u for u in raw["users"] if u["name"] == "other-user")["user"]
    assert other == {"token": "not-a-real-token"}
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert not (tmp_path / "second-file").exists()


def test_out_dash_prints_it_and_writes_no_file(
    ws: Workspace, cluster: tuple[Path, str], tmp_path: Path
) -> None:
    spec, control_ip = cluster
    result = ws.run("kubeconfig", "-f", str(spec), "--out", "-")
    assert result.exit_code == 0, result.stderr
    doc = yaml.safe_load(result.stdout)
    assert doc["current-context"] == "kcfg"
    assert doc["clusters"][0]["cluster"]["server"] == f"https://{control_ip}:6443"
    as_json = ws.run("kubeconfig", "-f", str(spec), "--out", "-", "-o", "json")
    assert json.loads(as_json.stdout)["contexts"] == doc["contexts"]
    assert not (tmp_path / "-").exists()


def test_the_admin_certificate_is_reused_not_minted_each_call(
    ws: Workspace, cluster: tuple[Path, str], tmp_path: Path
) -> None:
    spec, _ = cluster
    first = ws.run("kubeconfig", "-f", str(spec), "--out", str(tmp_path / "a"), "-o", "json")
    second = ws.run("kubeconfig", "-f", str(spec), "--out", "-")
    assert first.json()["certificate"]["reused"] is False
    cert = client_cert(yaml.safe_load((tmp_path / "a").read_text()), "kcfg-admin")
    assert client_cert(yaml.safe_load(second.stdout), "kcfg-admin") == cert
    # A kept kubeconfig that is damaged (or from another CA) gets a new certificate.
    kept = ws.home / "clusters" / "kcfg" / "admin.kubeconfig"
    kept.write_text("users: []\n")
    third = ws.run("kubeconfig", "-f", str(spec), "-o", "json")
    assert third.json()["certificate"]["reused"] is False
    assert client_cert(yaml.safe_load(kept.read_text()), "kcfg-admin") != cert
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600


def test_it_is_renewed_once_a_third_of_its_life_is_left(
    ws: Workspace, cluster: tuple[Path, str]
) -> None:
    spec, _ = cluster
    assert ws.run("kubeconfig", "-f", str(spec)).exit_code == 0
    home = ws.home / "clusters" / "kcfg"
    user = yaml.safe_load((home / "admin.kubeconfig").read_text())["users"][0]["user"]
    admin = CertKey(
        base64.b64decode(user["client-certificate-data"]).decode(),
        base64.b64decode(user["client-key-data"]).decode(),
    )
    ca = CertKey(
        (home / "pki" / "kube-ca.crt").read_text(), (home / "pki" / "kube-ca.key").read_text()
    )
    cert = x509.load_pem_x509_certificate(admin.cert_pem.encode())
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    third = (end - start) / 3
    assert still_good(admin, ca, start + dt.timedelta(days=1))
    assert still_good(admin, ca, end - third - dt.timedelta(days=1))
    assert not still_good(admin, ca, end - third + dt.timedelta(days=1))
    other_ca = CertKey(
        (home / "pki" / "etcd-ca.crt").read_text(), (home / "pki" / "etcd-ca.key").read_text()
    )
    assert not still_good(admin, other_ca, start + dt.timedelta(days=1))


def test_server_choices(ws: Workspace, cluster: tuple[Path, str]) -> None:
    spec, control_ip = cluster
    private = ws.run("kubeconfig", "-f", str(spec), "--server", "private", "-o", "json")
    assert private.json()["server"] == f"https://{control_ip}:6443"
    url = ws.run(
        "kubeconfig", "-f", str(spec), "--server", "https://k8s.example.com:6443", "--out", "-"
    )
    assert (
        yaml.safe_load(url.stdout)["clusters"][0]["cluster"]["server"]
        == "https://k8s.example.com:6443"
    )
    public = ws.run("kubeconfig", "-f", str(spec), "--server", "public")
    assert public.exit_code == 2
    assert public.stderr.splitlines() == [public.stderr.strip()]
    assert "the cloud reports no public IP for kcfg-control-1" in public.stderr
    assert "--server private" in public.stderr
    bad = ws.run("kubeconfig", "-f", str(spec), "--server", "k8s.example.com:6443")
    assert bad.exit_code == 2
    assert "e.g. https://k8s.example.com:6443" in bad.stderr and "Traceback" not in bad.stderr


def test_json_has_the_documented_shape(ws: Workspace, cluster: tuple[Path, str]) -> None:
    spec, _ = cluster
    doc = (REPO / "docs" / "output.md").read_text()
    section = re.search(r"^## `kubeconfig`\n(.*?)(?=^## |\Z)", doc, re.M | re.S)
    assert section, "docs/output.md has no '## `kubeconfig`' section"
    block = re.search(r"```json\n(.*?)```", section.group(1), re.S)
    assert block
    documented = json.loads(block.group(1))
    real = ws.run("kubeconfig", "-f", str(spec), "-o", "json").json()
    assert sorted(real) == sorted(documented)
    assert sorted(real["certificate"]) == sorted(documented["certificate"])
