"""Open the cloud a spec points at: the only place that picks a provisioner.

`cloud.provider` names an entry of provisioners/registry.py, whose factory finds the
credentials (or starts the embedded simulator for `profile: simulator`) as that cloud's
own tools do. The engine gets a Provisioner and never learns which.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from stackfleet.provisioners import registry
from stackfleet.provisioners.base import Progress, Provisioner

SIMULATOR_PROFILE = "simulator"


@dataclass(frozen=True)
class CloudTarget:
    profile: str | None
    endpoint: str | None = None
    concurrency: int = 8
    timeout_s: float = 1800
    # The embedded simulator's hypervisor ("simulator" or "qemu") and the folder its
    # QEMU router serves as an artifact mirror; None: STACKFLEET_SIMULATOR_* or defaults.
    simulator_hypervisor: str | None = None
    simulator_mirror: str | None = None
    # Where `profile` came from, for credential advice: the spec, or a command's flag.
    profile_from: str = "cloud.profile"
    # Which cloud API (registry.PROVIDERS): the spec's cloud.provider, or --provider.
    provider: str = registry.DEFAULT_PROVIDER
    # The spec's zone, for providers whose API is per zone (None: the provider finds it).
    zone: str | None = None


@contextmanager
def open_cloud(target: CloudTarget, on_progress: Progress | None = None) -> Iterator[Provisioner]:
    with registry.provider(target.provider).open(target, on_progress) as prov:
        yield prov
