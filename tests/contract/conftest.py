"""The `cloud` fixture: each test of the contract suite once per provider (sf_contract)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sf_contract import PROVIDERS, Cloud


@pytest.fixture(params=sorted(PROVIDERS))
def cloud(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cloud]:
    with PROVIDERS[request.param](tmp_path, monkeypatch) as opened:
        yield opened
