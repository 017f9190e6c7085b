"""Zones, templates and instance types by the names a spec uses.

- zones by name (`ch-gva-2`): exoscale's zones have no other id;
- templates (the spec's `template`) by id, by name, by exoscale's long name ("Ubuntu 24.04
  LTS" is "Linux Ubuntu 24.04 LTS 64-bit"), or by words that pick exactly one template
  ("flatcar", "ubuntu 22.04"); public templates first, then the account's own;
- instance types (the spec's `offering`) by id or `family.size` ("standard.medium"), or a
  bare size ("medium", or CloudStack-style "Medium") in the standard family.

Zone facts: the public IPv4 is assigned when an instance is created, before it boots (so
stackfleet writes the final user-data and starts it: one boot); the user-data limit is
create-instance's own `maxLength` in the OpenAPI spec the client ships (base64 characters).
"""

from __future__ import annotations

import difflib
from typing import Any

from stackfleet.errors import NotFound
from stackfleet.provisioners.base import Image, Size, Zone
from stackfleet.provisioners.exoscale.client import ExoscaleAPI
from stackfleet.provisioners.exoscale.userdata import api_limit

DEFAULT_FAMILY = "standard"
MIB = 1024**2


def _suggest(word: str, names: list[str]) -> str:
    close = difflib.get_close_matches(word, names, n=3, cutoff=0.4)
    shown = close or names[:5]
    return f"; e.g. {', '.join(shown)}" if shown else ""


def zone_names(api: ExoscaleAPI) -> list[str]:
    return [str(z["name"]) for z in api.catalog("list_zones").get("zones", [])]


def find_zone(api: ExoscaleAPI, name: str) -> Zone:
    names = zone_names(api)
    match = next((n for n in names if n.lower() == name.strip().lower()), None)
    if match is None:
        raise NotFound(f"cloud.zone: exoscale has no zone {name!r}{_suggest(name, names)}")
    api.use_zone(match)
    return Zone(id=match, name=match, ip_known_at_create=True, userdata_limit=api_limit())


def _words(text: str) -> set[str]:
    return set(text.lower().replace("-", " ").split())


def find_image(api: ExoscaleAPI, name_or_id: str, field: str = "template") -> Image:
    templates: list[dict[str, Any]] = []
    for visibility in ("public", "private"):
        templates += api.catalog("list_templates", visibility=visibility).get("templates", [])
    wanted = name_or_id.strip()
    low = wanted.lower()
    for test in (
        lambda t: t["id"] == wanted,
        lambda t: t["name"].lower() == low,
        lambda t: t["name"].lower() == f"linux {low} 64-bit",
    ):
        found = [t for t in templates if test(t)]
        if found:
            return Image(id=found[0]["id"], name=found[0]["name"])
    words = _words(wanted)
    found = [t for t in templates if words and words <= _words(t["name"])]
    if len(found) == 1:
        return Image(id=found[0]["id"], name=found[0]["name"])
    names = sorted({t["name"] for t in templates})
    if found:
        raise NotFound(
            f"{field}: {wanted!r} matches {len(found)} exoscale templates "
            f"({', '.join(sorted(t['name'] for t in found)[:4])}); give one full name"
        )
    raise NotFound(f"{field}: exoscale has no template {wanted!r}{_suggest(wanted, names)}")


def find_size(api: ExoscaleAPI, name_or_id: str, field: str = "offering") -> Size:
    kinds = api.catalog("list_instance_types").get("instance-types", [])
    wanted = name_or_id.strip()
    low = wanted.lower()
    full = low if "." in low else f"{DEFAULT_FAMILY}.{low}"
    for kind in kinds:
        name = f"{kind['family']}.{kind['size']}"
        if kind["id"] == wanted or name == full:
            return Size(
                id=kind["id"],
                name=name,
                cpus=int(kind.get("cpus", 0)),
                memory_mb=int(kind.get("memory", 0)) // MIB,
            )
    names = sorted(f"{k['family']}.{k['size']}" for k in kinds)
    raise NotFound(f"{field}: exoscale has no instance type {wanted!r}{_suggest(full, names)}")
