"""Open an exoscale account: credentials as exoscale's tools find them, or the embedded
exoscale simulator for `profile: simulator`. The `exoscale` entry of
provisioners/registry.py.

`profile: simulator` starts simulator/exoscale in-process on a loopback port, its state under
$STACKFLEET_HOME/simulator (or $STACKFLEET_SIMULATOR_STATE_DIR), so `up`, `status` and `down`
run as separate commands see one cloud. Its instances run nothing: nothing is dialled.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from stackfleet.errors import BadInput
from stackfleet.provisioners import reach
from stackfleet.provisioners.base import Progress, Provisioner
from stackfleet.provisioners.exoscale.credentials import (
    ExoscaleCredentials,
    _checked,
    find_credentials,
)

if TYPE_CHECKING:
    from stackfleet.provisioners.session import CloudTarget

SIMULATOR_PROFILE = "simulator"
# Seconds an embedded simulator's operation stays pending (a testing knob, never read for a
# real cloud); the simulator's own default otherwise.
LATENCY_ENV = "STACKFLEET_EXOSCALE_SIMULATOR_LATENCY"


@contextmanager
def open_exoscale(
    target: CloudTarget, on_progress: Progress | None = None
) -> Iterator[Provisioner]:
    from stackfleet.provisioners.exoscale.client import ExoscaleAPI
    from stackfleet.provisioners.exoscale.provisioner import ExoscaleProvisioner

    with _credentials(target) as (creds, simulated):
        # The spec's zone where the target carries it; else the provisioner looks for the
        # cluster in every zone (see ExoscaleProvisioner._locate).
        prov = ExoscaleProvisioner(
            ExoscaleAPI(creds, zone=target.zone),
            concurrency=target.concurrency,
            timeout_s=target.timeout_s,
            on_progress=on_progress,
            simulated=simulated,
        )
        try:
            yield prov
        finally:
            prov.close()


@contextmanager
def _credentials(target: CloudTarget) -> Iterator[tuple[ExoscaleCredentials, bool]]:
    if target.profile != SIMULATOR_PROFILE:
        creds = find_credentials(target.profile, profile_from=target.profile_from)
        if target.endpoint:  # the spec's cloud.endpoint wins over the tools' settings
            endpoint = _checked(target.endpoint, "cloud.endpoint")
            creds = ExoscaleCredentials(creds.key, creds.secret, endpoint, creds.zone, creds.source)
        yield creds, False
        return
    if target.simulator_hypervisor not in (None, "simulator"):
        raise BadInput(
            f"cloud.simulator.hypervisor: {target.simulator_hypervisor} is for the CloudStack "
            "simulator; the exoscale simulator's instances run nothing (remove it)"
        )
    from stackfleet.simulator.exoscale import embedded

    latency = _latency()
    # Its instances run nothing and live at documentation addresses: dial nothing at all.
    reach.confine(None)
    with embedded() if latency is None else embedded(operation_latency=latency) as api:
        yield (
            ExoscaleCredentials(
                api.api_key, api.secret, api.url, api.zone, "the embedded exoscale simulator"
            ),
            True,
        )


def _latency() -> float | None:
    value = os.environ.get(LATENCY_ENV, "").strip()
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise BadInput(f"{LATENCY_ENV}={value!r}: not a number of seconds (e.g. 0.2)") from None
