"""The store's safety properties against a real S3 server (SeaweedFS on loopback):
conditional writes (one CA set wins a race, no lost update), a wrong or missing key
refused in one line, a store that dies mid-run leaving no half-written state."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sf_seaweed import S3Server
from sf_testkit import Workspace

from stackfleet import statestore


def url(server: S3Server, prefix: str) -> str:
    return f"s3://{server.bucket}/{prefix}?path_style=1"


def test_conditional_writes_on_the_real_server(s3_env: S3Server) -> None:
    store = statestore.S3Store(url(s3_env, "cond"))
    etag = store.put("x/state.json", b"one", create=True)
    with pytest.raises(statestore.Conflict):
        store.put("x/state.json", b"two", create=True)  # If-None-Match: * -> 412
    newer = store.put("x/state.json", b"two", if_match=etag)
    with pytest.raises(statestore.Conflict):
        store.put("x/state.json", b"three", if_match=etag)  # a stale etag -> 412
    assert store.get("x/state.json") == (b"two", newer)
    assert store.list("x/") == ["x/state.json"]
    store.delete("x/state.json")
    assert store.get("x/state.json") is None


def test_conditional_writes_on_a_local_folder(tmp_path: Path) -> None:
    store = statestore.LocalStore(tmp_path / "st")
    etag = store.put("x/state.json", b"one", create=True)
    with pytest.raises(statestore.Conflict):
        store.put("x/state.json", b"two", create=True)
    store.put("x/state.json", b"two", if_match=etag)
    with pytest.raises(statestore.Conflict):
        store.put("x/state.json", b"three", if_match=etag)
    assert (tmp_path / "st" / "x" / "state.json").stat().st_mode & 0o777 == 0o600


def _home(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    monkeypatch.setenv("STACKFLEET_HOME", str(path))


def test_two_runners_racing_for_the_cas_one_set_wins(
    s3_env: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both read 'no state', both make CAs; the second create gets 412 and takes the first's."""
    where = url(s3_env, "race")
    _home(monkeypatch, tmp_path / "a")
    a = statestore.pull("rc", where)
    _home(monkeypatch, tmp_path / "b")
    b = statestore.pull("rc", where)
    assert a is not None and b is not None and a.files is None and b.files is None
    _home(monkeypatch, tmp_path / "a")
    fa = statestore.ensure_pki("rc", a, {}, 0)
    _home(monkeypatch, tmp_path / "b")
    fb = statestore.ensure_pki("rc", b, {}, 0)
    assert fa == fb and len(fa) == 3
    for name in ("etcd-ca.crt", "kube-ca.key", "front-proxy-ca.key", "sa.key"):
        assert (tmp_path / "a/clusters/rc/pki" / name).read_text() == (
            tmp_path / "b/clusters/rc/pki" / name
        ).read_text()
    stored = json.loads(s3_env.objects()["race/rc/state.json"])
    assert stored["ca_fingerprints"] == fa


RACER = textwrap.dedent(
    """
    import os, sys, time
    from stackfleet import statestore
    remote = statestore.pull("rx", sys.argv[1])
    while time.time() < float(sys.argv[2]):
        time.sleep(0.001)
    print(statestore.ensure_pki("rx", remote, {}, 0)["stackfleet:ca-kube"])
    """
)


def test_two_processes_racing_for_the_cas(s3_env: S3Server, tmp_path: Path) -> None:
    """The same with two real processes started at one instant: one fingerprint for both."""
    import time

    go = str(time.time() + 3)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, url(s3_env, "race2"), go],
            env={**os.environ, "STACKFLEET_HOME": str(tmp_path / f"r{i}")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-300:] for o in outs]
    assert outs[0][0] == outs[1][0] and len(outs[0][0].strip()) == 64
    stored = json.loads(s3_env.objects()["race2/rx/state.json"])
    assert stored["ca_fingerprints"]["stackfleet:ca-kube"] == outs[0][0].strip()


def test_wrong_or_missing_key_is_one_line_exit_2(
    s3_env: S3Server, ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    where = url(s3_env, "keys")
    spec = ws.spec("keyed", state=where, roles={"etcd": {"count": 1}, "workers": {"count": 0}})
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    monkeypatch.setenv("STACKFLEET_SIMULATOR_STATE_DIR", str(ws.home / "simulator"))
    monkeypatch.setenv("STACKFLEET_HOME", str(ws.home.parent / "other"))
    monkeypatch.setenv("STACKFLEET_STATE_KEY", base64.b64encode(os.urandom(32)).decode())
    wrong = ws.run("kubeconfig", "-f", str(spec))
    assert wrong.exit_code == 2
    assert wrong.stderr.count("\n") == 1 and "encryption key does not open" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    monkeypatch.delenv("STACKFLEET_STATE_KEY")
    missing = ws.run("state", "pull", "-f", str(spec))
    assert missing.exit_code == 2 and "STACKFLEET_STATE_KEY" in missing.stderr
    key_file = ws.root / "bad.key"
    key_file.write_text("not base64 at all!\n")
    monkeypatch.setenv("STACKFLEET_STATE_KEY_FILE", str(key_file))
    key_file.chmod(0o644)
    open_file = ws.run("state", "pull", "-f", str(spec))
    assert open_file.exit_code == 2 and "chmod 600" in open_file.stderr
    key_file.chmod(0o600)
    bad = ws.run("state", "pull", "-f", str(spec))
    assert bad.exit_code == 2 and "openssl rand -base64 32" in bad.stderr
    assert not (ws.home.parent / "other" / "clusters" / "keyed" / "pki").exists()


def test_store_down_mid_run_leaves_no_half_written_state(
    own_s3_env: S3Server, ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server stops while `up` deploys: `up` fails in one line (exit 1), the store
    holds the whole previous version (the CA claim), and a re-run completes it."""
    server = own_s3_env
    where = url(server, "mid")
    spec = ws.spec("mid", state=where, roles={"etcd": {"count": 1}, "workers": {"count": 1}})
    from stackfleet.provisioners import up as up_module

    real_up = up_module.up

    def up_then_store_dies(*args: object, **kw: object) -> object:
        server.stop()
        return real_up(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(up_module, "up", up_then_store_dies)
    failed = ws.run("up", "-f", str(spec))
    assert failed.exit_code == 1, failed.stderr
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "unreachable" in last and "run the same" in last
    monkeypatch.setattr(up_module, "up", real_up)

    server.restart()
    raw = server.objects()["mid/mid/state.json"]
    remote = statestore.connect("mid", where)
    assert remote is not None
    claimed = statestore.decode("mid", raw, remote.key, "test")  # whole and decryptable
    assert "pki/kube-ca.key" in claimed and not any("ssh-host" in f for f in claimed)
    again = ws.run("up", "-f", str(spec), "-o", "json")  # same runner: its keys go up now
    assert again.exit_code == 0, again.stderr
    final = statestore.decode("mid", server.objects()["mid/mid/state.json"], remote.key, "t")
    assert "pki/ssh-host-mid-worker-1.key" in final
    assert final["pki/kube-ca.crt"] == claimed["pki/kube-ca.crt"]


def test_push_and_pull_with_dry_run(
    s3_env: S3Server, ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = ws.spec("moved", roles={"etcd": {"count": 1}, "workers": {"count": 0}})
    assert ws.run("up", "-f", str(spec)).exit_code == 0  # local state only
    where = url(s3_env, "moves")
    dry = ws.run("state", "push", "-f", str(spec), "--to", where, "--dry-run", "-o", "json")
    assert dry.exit_code == 0, dry.stderr
    assert dry.json()["dry_run"] is True and len(dry.json()["moved"]) > 5
    assert "moves/moved/state.json" not in s3_env.objects()
    pushed = ws.run("state", "push", "-f", str(spec), "--to", where, "-o", "json")
    assert pushed.exit_code == 0 and pushed.json()["moved"] == dry.json()["moved"]
    # A second machine: its own empty home, the same cloud.
    monkeypatch.setenv("STACKFLEET_SIMULATOR_STATE_DIR", str(ws.home / "simulator"))
    monkeypatch.setenv("STACKFLEET_HOME", str(ws.home.parent / "fresh"))
    refused = ws.run("up", "-f", str(spec))
    assert refused.exit_code == 2 and "state pull" in refused.stderr
    pulled = ws.run("state", "pull", "-f", str(spec), "--from", where, "-o", "json")
    assert pulled.exit_code == 0, pulled.stderr
    assert {m["action"] for m in pulled.json()["moved"]} == {"add"}
    again = ws.run("up", "-f", str(spec), "-o", "json")
    assert again.exit_code == 0, again.stderr
    assert again.json()["changed"] is False


def test_up_refuses_a_pki_that_differs_from_the_cloud(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No store at all (the local default): a foreign PKI is refused, never replaced."""
    spec = ws.spec("foreign", roles={"etcd": {"count": 1}, "workers": {"count": 0}})
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    pki = ws.home / "clusters" / "foreign" / "pki"
    original = (pki / "kube-ca.crt").read_text()
    from stackfleet.pki import new_ca

    other = new_ca("foreign-kubernetes-ca")
    (pki / "kube-ca.crt").write_text(other.cert_pem)
    (pki / "kube-ca.key").write_text(other.key_pem)
    refused = ws.run("up", "-f", str(spec))
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1
    assert "differ from those recorded on the cloud" in refused.stderr
    assert str(pki) in refused.stderr and "state pull" in refused.stderr
    assert (pki / "kube-ca.crt").read_text() == other.cert_pem  # untouched, not "repaired"
    (pki / "kube-ca.crt").write_text(original)
    assert ws.run("up", "-f", str(spec)).exit_code == 0
