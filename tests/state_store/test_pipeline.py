"""A three-job CI pipeline with the PKI in an S3 state store (SeaweedFS), each job on an
empty $STACKFLEET_HOME, all jobs on one simulated cloud (STACKFLEET_SIMULATOR_STATE_DIR).

Job 1: up. Job 2: kubeconfig, then scale the workers 1 -> 2. Job 3: down. Between them: a
runner without the store is refused, and a wrong key is refused; every object is scanned.
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import pytest
import yaml
from sf_seaweed import S3Server
from sf_testkit import Workspace, mutating

SECRET_PATTERNS = (
    re.compile(rb"PRIVATE KEY"),
    re.compile(rb"OPENSSH PRIVATE"),
    re.compile(rb"\b[a-z0-9]{6}\.[a-z0-9]{16}\b"),  # a kubeadm bootstrap token
)


def job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int) -> Workspace:
    """A fresh runner: its own empty $STACKFLEET_HOME; the cloud is the shared one."""
    home = tmp_path / f"job{n}" / "home"
    monkeypatch.setenv("STACKFLEET_HOME", str(home))
    root = tmp_path / f"job{n}" / "checkout"
    root.mkdir(parents=True)
    return Workspace(home, root)


def write_spec(ws: Workspace, state: str | None, workers: int) -> Path:
    data: dict[str, object] = {
        "name": "pipe",
        "cloud": {"profile": "simulator", "zone": "sim-zrh-1"},
        "roles": {"etcd": {"count": 1}, "control": {"count": 1}, "workers": {"count": workers}},
        "access": {"ssh_cidrs": ["203.0.113.0/24"]},
    }
    if state:
        data["state"] = state
    path = ws.root / "pipe.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def requests(sim: Path) -> list[dict[str, object]]:
    log = sim / "requests.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def scan(objects: dict[str, bytes], secrets: list[bytes]) -> list[str]:
    """(object, what matched) for every plaintext secret found; the match is shortened."""
    found = [
        (k, p.pattern[:12]) for k, v in objects.items() for p in SECRET_PATTERNS if p.search(v)
    ]
    found += [(k, s[:6]) for k, v in objects.items() for s in secrets if s and s in v]
    return [f"{k}: {what!r}" for k, what in found]


def local_secrets(home: Path) -> list[bytes]:
    """Every private file's distinctive content (the base64 body of each key, the token)."""
    out, public = [], b""
    for path in home.rglob("*"):
        if path.is_file() and path.suffix in (".crt", ".pub"):
            public += path.read_bytes()
    for path in home.rglob("*"):
        if path.is_file() and path.suffix not in (".crt", ".pub") and path.name[0] != ".":
            text = path.read_bytes()
            lines = [ln for ln in text.splitlines() if ln and not ln.startswith(b"-----")]
            # A key's PEM ends with its public point, as its certificate's does: not secret.
            out += [ln for ln in lines if len(ln) >= 20 and ln not in public] or [text.strip()]
    return out


@pytest.mark.timeout(240)
def test_three_job_pipeline_shares_the_pki_through_s3(
    s3_env: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = tmp_path / "cloud"
    monkeypatch.setenv("STACKFLEET_SIMULATOR_STATE_DIR", str(sim))
    monkeypatch.setenv("STACKFLEET_SIMULATOR_LATENCY", "default=0")
    for name in ("CLOUDSTACK_ENDPOINT", "CLOUDSTACK_KEY", "CLOUDSTACK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    # The endpoint and path-style in the URL; the credentials as AWS_* variables.
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    state = f"s3://{s3_env.bucket}/pipeline?endpoint={s3_env.endpoint}&path_style=1"

    # ---- job 1: up
    one = job(tmp_path, monkeypatch, 1)
    up = one.run("up", "-f", str(write_spec(one, state, 1)), "-o", "json")
    assert up.exit_code == 0, up.stderr
    objects = s3_env.objects()
    assert list(objects) == ["pipeline/pipe/state.json"]
    stored = json.loads(objects["pipeline/pipe/state.json"])
    kube_ca = (one.home / "clusters/pipe/pki/kube-ca.crt").read_text()
    assert stored["files"]["pki/kube-ca.crt"]["text"] == kube_ca
    assert set(stored["files"]["pki/kube-ca.key"]) == {"sealed"}
    assert scan(objects, local_secrets(one.home)) == []
    # The cloud records the CA fingerprints (tags on the etcd group).
    tags = [r for r in requests(sim) if r["command"] == "createTags"]
    assert any("stackfleet:ca-kube" in json.dumps(r) for r in tags)

    # ---- a runner without the store: refused, in one line, never new CAs
    lost = job(tmp_path, monkeypatch, 9)
    refused = lost.run("up", "-f", str(write_spec(lost, None, 1)))
    assert refused.exit_code == 2
    assert refused.stderr.count("\n") == 1 and "state pull" in refused.stderr
    assert not (lost.home / "clusters/pipe/pki/kube-ca.crt").exists()

    # ---- job 2: kubeconfig, then scale up (workers 1 -> 2)
    two = job(tmp_path, monkeypatch, 2)
    spec2 = write_spec(two, state, 1)
    out = two.root / "admin.kubeconfig"
    kc = two.run("kubeconfig", "-f", str(spec2), "--out", str(out))
    assert kc.exit_code == 0, kc.stderr
    ca_data = yaml.safe_load(out.read_text())["clusters"][0]["cluster"]
    assert base64.b64decode(ca_data["certificate-authority-data"]).decode() == kube_ca
    assert out.stat().st_mode & 0o777 == 0o600
    before = len(requests(sim))
    same = two.run("up", "-f", str(spec2), "-o", "json")
    assert same.exit_code == 0, same.stderr
    assert same.json()["changed"] is False  # the store's PKI matched what the cloud records
    scaled = two.run("up", "-f", str(write_spec(two, state, 2)), "-o", "json")
    assert scaled.exit_code == 0, scaled.stderr
    assert [a["name"] for a in scaled.json()["actions"]] == ["pipe-worker-2"]
    calls = mutating(requests(sim)[before:])
    # The operator key came from the store: not replaced; the CAs were not re-tagged.
    assert "deleteSSHKeyPair" not in calls and "registerSSHKeyPair" not in calls
    stored = json.loads(s3_env.objects()["pipeline/pipe/state.json"])
    assert "pki/ssh-host-pipe-worker-2.pub" in stored["files"]
    assert stored["files"]["pki/kube-ca.crt"]["text"] == kube_ca

    # ---- the secret scan: every object, read back raw
    objects = s3_env.objects()
    assert scan(objects, local_secrets(one.home) + local_secrets(two.home)) == []

    # ---- job 3: down (also removes the cluster's state object)
    three = job(tmp_path, monkeypatch, 3)
    down = three.run("down", "-f", str(write_spec(three, state, 2)), "--yes", "-o", "json")
    assert down.exit_code == 0, down.stderr
    assert down.json()[0]["machines"] == 4
    assert "pipeline/pipe/state.json" not in s3_env.objects()
    gone = three.run("status", "--cluster", "pipe", "--profile", "simulator", "-o", "json")
    assert gone.json()["exists"] is False
    assert os.environ["STACKFLEET_HOME"] == str(three.home)
