"""The providers the contract suite (tests/contract) holds to one behaviour: one row each
in PROVIDERS.

Each row opens a fresh, empty cloud of that provider and says which zone, template and
offering names to use there. Adding a provider (exoscale) is one row here. A module with
its own name, not a conftest.py: test folders import it by name whichever of them pytest
collects first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sf_fakecloud import FakeCloud, open_fake
from sf_testkit import make_workspace

from stackfleet.provisioners.base import Provisioner


@dataclass(frozen=True)
class Cloud:
    prov: Provisioner
    zone: str
    template: str
    offering: str


Opener = Callable[[Path, pytest.MonkeyPatch], AbstractContextManager[Cloud]]


@contextmanager
def _fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    with open_fake(FakeCloud()) as prov:
        yield Cloud(prov, "fake-1", "Flatcar Container Linux stable", "Small")


@contextmanager
def _cloudstack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    """The CloudStack provider against the embedded simulator, as `profile: simulator`
    opens it (latency 0)."""
    from stackfleet.provisioners.session import CloudTarget, open_cloud

    make_workspace(tmp_path, monkeypatch)
    with open_cloud(CloudTarget("simulator", provider="cloudstack", timeout_s=120)) as prov:
        yield Cloud(prov, "sim-zrh-1", "Flatcar Container Linux stable", "Small")


@contextmanager
def _exoscale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    """The exoscale provider (the official `exoscale` client) against the embedded exoscale
    API v2 simulator, as `profile: simulator` opens it (operations pending 0.02 s)."""
    from stackfleet.provisioners.session import CloudTarget, open_cloud

    make_workspace(tmp_path, monkeypatch)
    monkeypatch.setenv("STACKFLEET_EXOSCALE_SIMULATOR_LATENCY", "0.02")
    with open_cloud(CloudTarget("simulator", provider="exoscale", timeout_s=120)) as prov:
        yield Cloud(prov, "ch-gva-2", "Flatcar Container Linux stable", "Small")


PROVIDERS: dict[str, Opener] = {
    "fake": _fake,
    "cloudstack": _cloudstack,
    "exoscale": _exoscale,
}
