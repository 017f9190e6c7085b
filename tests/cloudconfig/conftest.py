"""Shared inputs: a cluster of N etcd + 1 control + W workers with a real PKI in tmp dirs."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from sf_render import make_input

from stackfleet.cloudconfig_templates.model import RenderInput


@pytest.fixture
def render_input(tmp_path: Path) -> Callable[..., RenderInput]:
    def build(flavor: str, etcd: int = 3, workers: int = 5) -> RenderInput:
        return make_input(tmp_path / f"pki-{flavor}-{etcd}-{workers}", flavor, etcd, workers)

    return build


@pytest.fixture
def need_tools() -> Callable[[str], None]:
    def check(flavor: str) -> None:
        if shutil.which("systemd-analyze") is None:
            pytest.skip("systemd-analyze is not installed: unit checks cannot run")
        if shutil.which("shellcheck") is None:
            pytest.skip("shellcheck is not installed: script checks cannot run")
        if flavor == "ubuntu" and shutil.which("cloud-init") is None:
            pytest.skip("cloud-init is not installed: `cloud-init schema` cannot run")

    return check
