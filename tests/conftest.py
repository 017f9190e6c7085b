"""Shared fixtures for the CLI and engine tests; the helpers live in sf_testkit.

What is real here: the stackfleet CLI (in-process through click's runner, or as a
subprocess where signals matter), the embedded CloudStack simulator it starts (real
HTTP on loopback, real request signing, SQLite state), libcloud's HTTP layer. What is
simulated: the cloud itself (no hypervisor; VMs are rows that change state on a clock).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sf_testkit import Workspace, make_workspace


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    return make_workspace(tmp_path, monkeypatch)
