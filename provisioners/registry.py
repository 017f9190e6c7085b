"""The clouds stackfleet can talk to: `cloud.provider` -> how to open one.

The one engine file that names providers (tests/unit/test_engine_boundary.py allows it
here and nowhere else): one row per provider, with the module that opens it imported
only when it is used, and how that cloud measures userdata (light, so `validate` and
`render` can measure offline). A provider whose package is not installed (or not
written yet) is refused in one line when a spec names it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from stackfleet.errors import BadInput

if TYPE_CHECKING:
    from stackfleet.provisioners.base import Progress, Provisioner, UserdataRule
    from stackfleet.provisioners.session import CloudTarget

Opener = Callable[["CloudTarget", "Progress | None"], AbstractContextManager["Provisioner"]]


@dataclass(frozen=True)
class ProviderEntry:
    name: str
    # "module:function": a context manager (target, on_progress) -> Provisioner.
    opener: str
    # "module:NAME": the provider's UserdataRule.
    userdata: str
    about: str

    @property
    def open(self) -> Opener:
        return cast("Opener", _load(self.opener))

    @property
    def userdata_rule(self) -> UserdataRule:
        return cast("UserdataRule", _load(self.userdata))


_PKG = "stackfleet.provisioners"
PROVIDERS: dict[str, ProviderEntry] = {
    entry.name: entry
    for entry in (
        ProviderEntry(
            "cloudstack",
            f"{_PKG}.cloudstack.open:open_cloudstack",
            f"{_PKG}.cloudstack.userdata:RULE",
            "Apache CloudStack (a private cloud, or a public CloudStack cloud)",
        ),
        ProviderEntry(
            "exoscale",
            f"{_PKG}.exoscale.open:open_exoscale",
            f"{_PKG}.exoscale.userdata:RULE",
            "exoscale, on its API v2",
        ),
    )
}
DEFAULT_PROVIDER = "cloudstack"


def provider(name: str) -> ProviderEntry:
    """The entry for `name`, or one line naming the known ones."""
    entry = PROVIDERS.get(name)
    if entry is None:
        known = ", ".join(PROVIDERS)
        raise BadInput(f"cloud.provider: {name!r} is not a provider stackfleet knows ({known})")
    try:
        entry.open  # noqa: B018  (import it now: a missing provider fails here, in one line)
    except (ImportError, AttributeError):
        raise BadInput(
            f"cloud.provider: {name} is not available in this installation yet; "
            f"use cloud.provider: {DEFAULT_PROVIDER}"
        ) from None
    return entry


def userdata_rule(name: str) -> UserdataRule:
    """How `name` measures userdata; the default provider's for a name not known (the
    spec's validation names the bad provider)."""
    entry = PROVIDERS.get(name) or PROVIDERS[DEFAULT_PROVIDER]
    try:
        return entry.userdata_rule
    except (ImportError, AttributeError):
        return PROVIDERS[DEFAULT_PROVIDER].userdata_rule


def _load(reference: str) -> object:
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)
