"""The fixed cloud: account, zones, networks, templates, offerings and hosts.

Ids are uuid5 of the names, so every process and every restart agrees on them without
storing them.
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass
from functools import cache

_NS = uuid.UUID("5f0c6a52-7f1e-4c55-9d64-5a8c1f0b7e21")

ACCOUNT = "stackfleet"
DOMAIN = "ROOT"
CREATED = "2026-01-05T09:00:00+0000"


def stable_id(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "/".join(parts)))


ACCOUNT_ID = stable_id("account", ACCOUNT)
USER_ID = stable_id("user", ACCOUNT)
DOMAIN_ID = stable_id("domain", DOMAIN)


@cache
def _candidates(cidr: str) -> tuple[str, ...]:
    # .1 is the router (gateway and metadata server); guests from .10 on.
    hosts = list(ipaddress.IPv4Network(cidr).hosts())
    return tuple(str(ip) for ip in hosts[9:])


@dataclass(frozen=True)
class Network:
    name: str
    cidr: str
    type: str  # "Shared" (advanced zone) or the basic zone's guest network

    @property
    def id(self) -> str:
        return stable_id("network", self.name)

    @property
    def net(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.cidr)

    @property
    def gateway(self) -> str:
        return str(self.net.network_address + 1)

    def candidates(self) -> tuple[str, ...]:
        return _candidates(self.cidr)


@dataclass(frozen=True)
class Zone:
    name: str
    networktype: str  # "Basic" or "Advanced"
    network: Network

    @property
    def id(self) -> str:
        return stable_id("zone", self.name)

    @property
    def allocates_at_deploy(self) -> bool:
        # Advanced zone, SG-enabled shared network: the NIC's IP is reserved by deploy itself.
        return self.networktype == "Advanced"


@dataclass(frozen=True)
class Template:
    name: str
    ostypename: str
    size: int

    @property
    def id(self) -> str:
        return stable_id("template", self.name)

    @property
    def ostypeid(self) -> str:
        return stable_id("ostype", self.ostypename)


@dataclass(frozen=True)
class Offering:
    name: str
    cpunumber: int
    memory: int
    cpuspeed: int = 2000

    @property
    def id(self) -> str:
        return stable_id("serviceoffering", self.name)

    @property
    def displaytext(self) -> str:
        return f"{self.name} {self.cpunumber} vCPU, {self.memory // 1024} GB RAM"


ZONES = (
    Zone("sim-gva-1", "Basic", Network("sim-gva-1-guest", "10.11.0.0/20", "Shared")),
    Zone("sim-zrh-1", "Advanced", Network("sim-zrh-1-shared", "10.12.0.0/22", "Shared")),
)
TEMPLATES = (
    Template("Flatcar Container Linux stable", "Other Linux (64-bit)", 8589934592),
    Template("Ubuntu 24.04 LTS", "Ubuntu 24.04 LTS", 10737418240),
)
OFFERINGS = (
    Offering("Small", 2, 2048),
    Offering("Medium", 2, 4096),
    Offering("Large", 4, 8192),
)
AFFINITY_TYPES = ("host anti-affinity", "host affinity")


def zone_by_id(zone_id: str) -> Zone | None:
    return next((z for z in ZONES if z.id == zone_id), None)


def template_by_id(template_id: str) -> Template | None:
    return next((t for t in TEMPLATES if t.id == template_id), None)


def offering_by_id(offering_id: str) -> Offering | None:
    return next((o for o in OFFERINGS if o.id == offering_id), None)


def host_id(zone: Zone, index: int) -> str:
    return stable_id("host", zone.name, str(index))


def host_name(zone: Zone, index: int) -> str:
    return f"{zone.name}-kvm{index + 1:02d}"


# OS types the templates use, and a few more, with their categories (listOsTypes).
OS_TYPES = (
    ("Other Linux (64-bit)", "Other"),
    ("Ubuntu 24.04 LTS", "Ubuntu"),
    ("Debian GNU/Linux 12 (64-bit)", "Debian"),
    ("Other (64-bit)", "Other"),
)


def ostype_id(description: str) -> str:
    return stable_id("ostype", description)


def oscategory_id(category: str) -> str:
    return stable_id("oscategory", category)


@dataclass(frozen=True)
class DiskOffering:
    """CloudStack's stock disk offerings; a size of 0 with `customized` takes `size=` instead."""

    name: str
    disksize: int  # GB
    customized: bool = False

    @property
    def id(self) -> str:
        return stable_id("diskoffering", self.name)


DISK_OFFERINGS = (
    DiskOffering("Small", 5),
    DiskOffering("Medium", 20),
    DiskOffering("Large", 100),
    DiskOffering("Custom", 0, customized=True),
)
# One region, as a fresh CloudStack install has it (id 1, "Local").
REGION = {"id": 1, "name": "Local", "endpoint": "http://localhost:8080/client/"}
