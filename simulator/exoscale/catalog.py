"""The fixed part of the simulated exoscale zone: zones, templates and instance types.

Ids are uuid5 of the names, so every process and restart agrees on them without storing them.
Templates: Flatcar and Ubuntu, the two flavors stackfleet renders userdata for. Instance types:
exoscale's "standard" family, sizes as exoscale sells them (memory in bytes, as the API gives it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from stackfleet.simulator.exoscale import openapi

_NS = uuid.UUID("0c2b7a4e-3f61-4d7b-a8f4-6b1d2e9c5a10")
CREATED = "2026-01-05T09:00:00Z"
GIB = 1024**3
MIB = 1024**2


def stable_id(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "/".join(parts)))


def zones() -> list[dict[str, Any]]:
    """Every zone the spec names; each has its own endpoint on the real cloud."""
    return [
        {
            "name": name,
            "api-endpoint": f"https://api-{name}.exoscale.com/v2",
            "sos-endpoint": f"https://sos-{name}.exo.io",
        }
        for name in openapi.zone_names()
    ]


@dataclass(frozen=True)
class Template:
    name: str
    family: str
    version: str
    default_user: str
    boot_mode: str
    size: int

    @property
    def id(self) -> str:
        return stable_id("template", self.name)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": f"{self.name} (stackfleet simulator)",
            "family": self.family,
            "version": self.version,
            "build": f"{self.version}-sim",
            "default-user": self.default_user,
            "boot-mode": self.boot_mode,
            "size": self.size,
            "ssh-key-enabled": True,
            "password-enabled": False,
            "maintainer": "Exoscale",
            "visibility": "public",
            "zones": openapi.zone_names(),
            "created-at": CREATED,
        }


TEMPLATES = (
    Template(
        "Linux Flatcar Container Linux Stable 64-bit",
        "flatcar",
        "4152.2.3",
        "core",
        "uefi",
        10 * GIB,
    ),
    Template("Linux Ubuntu 24.04 LTS 64-bit", "ubuntu", "24.04", "ubuntu", "uefi", 10 * GIB),
    Template("Linux Ubuntu 22.04 LTS 64-bit", "ubuntu", "22.04", "ubuntu", "legacy", 10 * GIB),
)


@dataclass(frozen=True)
class InstanceType:
    size: str
    cpus: int
    memory: int
    family: str = "standard"

    @property
    def id(self) -> str:
        return stable_id("instance-type", self.family, self.size)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "family": self.family,
            "size": self.size,
            "cpus": self.cpus,
            "memory": self.memory,
            "authorized": True,
            "zones": openapi.zone_names(),
        }


INSTANCE_TYPES = (
    InstanceType("micro", 1, 512 * MIB),
    InstanceType("tiny", 1, 1 * GIB),
    InstanceType("small", 2, 2 * GIB),
    InstanceType("medium", 2, 4 * GIB),
    InstanceType("large", 4, 8 * GIB),
    InstanceType("extra-large", 4, 16 * GIB),
    InstanceType("huge", 8, 32 * GIB),
)


def template(template_id: str) -> Template | None:
    return next((t for t in TEMPLATES if t.id == template_id), None)


def instance_type(type_id: str) -> InstanceType | None:
    return next((t for t in INSTANCE_TYPES if t.id == type_id), None)
