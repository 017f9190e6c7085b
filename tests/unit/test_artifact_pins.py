"""`artifacts.<name>` pins: spec validation (one line per field) and the artifact set they make.

Real: spec parsing and validation, default_artifacts, rendering. Nothing is downloaded.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from sf_render import make_input, spec_artifacts

from stackfleet.artifacts import ARTIFACT_NAMES, ArtifactPin, default_artifacts
from stackfleet.cloudconfig_templates.parts import MANIFEST
from stackfleet.cloudconfig_templates.render import render_node
from stackfleet.cloudconfig_templates.validate import files_of
from stackfleet.errors import BadInput, SpecError
from stackfleet.spec import SCHEMA, parse_spec

SHA = "ab" * 32
BASE = {"name": "demo", "cloud": {"zone": "z"}, "roles": {"etcd": {"count": 1}}}


def _problems(artifacts: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as err:
        parse_spec({**BASE, "artifacts": artifacts})
    assert "\n" not in str(err.value)
    return [f"{path}: {msg}" for path, msg in err.value.problems]


def test_every_artifact_can_be_pinned_and_the_schema_and_docs_say_so():
    assert len(ARTIFACT_NAMES) == 7 and "etcd" in ARTIFACT_NAMES
    assert set(SCHEMA["properties"]["artifacts"]["properties"]) == {"base_url", *ARTIFACT_NAMES}
    docs = (Path(__file__).parents[2] / "docs/bootstrap.md").read_text()
    pinning = docs.split("### Pinning an artifact yourself", 1)[1].split("```", 1)[0]
    assert sorted(re.findall(r"`([a-z_]+)`", pinning)) == sorted(ARTIFACT_NAMES)


@pytest.mark.parametrize(
    ("pin", "expected"),
    [
        (
            {"url": "https://x.invalid/e.tgz", "version": "3.5.1", "sha256": "abc"},
            "artifacts.etcd.sha256: 'abc' must be 64 hex characters",
        ),
        (
            {"url": "ftp://x.invalid/e.tgz", "version": "3.5.1", "sha256": SHA},
            "artifacts.etcd.url: 'ftp://x.invalid/e.tgz' must be an absolute http(s) URL",
        ),
        (
            {"url": "https://x.invalid/e.tgz", "version": "3.5", "sha256": SHA},
            "artifacts.etcd.version: '3.5' must be a version such as 3.5.1",
        ),
        (
            {"url": "https://x.invalid/e.tgz", "version": "3.5.1"},
            "artifacts.etcd.sha256: is required",
        ),
        ({"version": "3.5.1", "sha256": SHA}, "artifacts.etcd: needs file"),
        (
            {"url": "https://x.invalid/e.tgz", "file": "e.tgz", "version": "3.5.1", "sha256": SHA},
            "artifacts.etcd: give file or url, not both",
        ),
        (
            {"file": "e.tgz", "version": "3.5.1", "sha256": SHA},
            "artifacts.etcd.file: needs artifacts.base_url",
        ),
        (
            {"url": "https://x.invalid/e.tgz", "version": "3.5.1", "sha256": SHA, "sha": SHA},
            "artifacts.etcd.sha: unknown key (did you mean 'sha256'?)",
        ),
    ],
)
def test_bad_pins_name_the_field(pin: dict[str, Any], expected: str):
    problems = _problems({"etcd": pin})
    assert any(p.startswith(expected) for p in problems), problems


def test_unknown_artifact_gets_did_you_mean():
    problems = _problems({"kubelets": {"file": "k", "version": "1.31.5", "sha256": SHA}})
    assert problems == ["artifacts.kubelets: unknown key (did you mean 'kubelet'?)"]


def test_file_pin_lives_under_base_url_and_url_pin_stands_alone():
    arts = spec_artifacts(
        {
            "base_url": "http://10.12.0.1:8090/",
            "etcd": {"file": "etcd-v3.5.1-linux-amd64.tar.gz", "version": "3.5.1", "sha256": SHA},
            "kubelet": {
                "url": "https://builds.example.invalid/k8s/kubelet-1.31.4-patched",
                "version": "v1.31.4",
                "sha256": SHA.upper(),
            },
        }
    )
    assert arts.etcd.url == "http://10.12.0.1:8090/etcd-v3.5.1-linux-amd64.tar.gz"
    assert (arts.etcd.sha256, arts.etcd_version) == (SHA, "3.5.1")
    assert arts.kubelet.url == "https://builds.example.invalid/k8s/kubelet-1.31.4-patched"
    assert (arts.kubelet.name, arts.kubelet.sha256, arts.kubelet.version) == (
        "kubelet-1.31.4-patched",
        SHA,
        "1.31.4",
    )
    default = default_artifacts("1.31.4", "http://10.12.0.1:8090/")
    assert arts.flannel == default.flannel  # what is not pinned stays as it was


def test_default_artifacts_refuses_a_file_pin_without_base_url():
    pin = ArtifactPin("etcd", "3.5.1", SHA, file="e.tgz")
    with pytest.raises(BadInput, match=r"^artifacts\.etcd\.file: needs artifacts\.base_url"):
        default_artifacts("1.31.4", None, [pin])


def test_pinned_versions_and_names_reach_the_rendered_documents(tmp_path: Path):
    arts = spec_artifacts(
        {
            "etcd": {"url": "https://x.invalid/etcd.tgz", "version": "3.5.1", "sha256": SHA},
            "flannel": {"url": "https://x.invalid/flanneld", "version": "0.26.1", "sha256": SHA},
        }
    )
    inp = make_input(tmp_path / "pki", "flatcar", etcd=1, workers=1, artifacts=arts)
    etcd = render_node(inp, "etcd-0")
    assert "etcd 3.5.1 member" in etcd and "3.6.14" not in etcd
    manifest = files_of(yaml.safe_load(etcd))[MANIFEST]
    assert (
        manifest
        == f"{SHA} https://x.invalid/etcd.tgz etcd.tgz tar /opt/bin */etcd */etcdctl */etcdutl\n"
    )
    worker = files_of(yaml.safe_load(render_node(inp, "worker-0")))
    flannel = next(ln for ln in worker[MANIFEST].splitlines() if "x.invalid" in ln)
    # The installed name comes from the role, not from the pinned file's name.
    assert flannel.split()[2:] == ["flanneld", "bin", "/opt/bin", "flanneld"]
    assert "0.26.1" in render_node(inp, "worker-0")
