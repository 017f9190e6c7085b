"""Zone, template and offering lookups by name or id, with a "did you mean" when absent."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from stackfleet.errors import NotFound
from stackfleet.provisioners.base import Image, Size, Zone
from stackfleet.provisioners.cloudstack.connection import CloudStackAPI
from stackfleet.provisioners.cloudstack.userdata import DEFAULT_LIMIT


def pick(items: Sequence[dict[str, Any]], wanted: str, what: str, field: str) -> dict[str, Any]:
    for item in items:
        if item.get("id") == wanted:
            return item
    matches = [i for i in items if str(i.get("name", "")).lower() == wanted.lower()]
    if matches:
        return matches[0]
    names = sorted({str(i.get("name")) for i in items})
    close = difflib.get_close_matches(wanted, names, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else f"; available: {', '.join(names[:8])}"
    raise NotFound(f"{field}: no {what} named {wanted!r}{hint}")


def find_zone(api: CloudStackAPI, wanted: str) -> Zone:
    zones = api.list_all("listZones", "zone", {"available": True})
    zone = pick(zones, wanted, "zone", "cloud.zone")
    advanced = str(zone.get("networktype", "")).lower() == "advanced"
    return Zone(
        id=zone["id"],
        name=zone["name"],
        ip_known_at_create=advanced,
        userdata_limit=DEFAULT_LIMIT,
    )


def _cached(api: CloudStackAPI, command: str, key: str, params: dict[str, Any]) -> list[Any]:
    """One list call per API object and arguments: roles share templates and offerings."""
    cache: dict[tuple[str, str], list[Any]] = api.__dict__.setdefault("_lookup_cache", {})
    slot = (command, repr(sorted(params.items())))
    if slot not in cache:
        cache[slot] = api.list_all(command, key, params)
    return cache[slot]


def find_image(api: CloudStackAPI, zone: Zone, wanted: str, field: str) -> Image:
    templates = _cached(
        api, "listTemplates", "template", {"templatefilter": "executable", "zoneid": zone.id}
    )
    t = pick(templates, wanted, f"template in zone {zone.name}", field)
    return Image(id=t["id"], name=t["name"])


def find_size(api: CloudStackAPI, wanted: str, field: str) -> Size:
    offerings = _cached(api, "listServiceOfferings", "serviceoffering", {})
    o = pick(offerings, wanted, "service offering", field)
    return Size(
        id=o["id"], name=o["name"], cpus=int(o.get("cpunumber", 0)), memory_mb=int(o["memory"])
    )


def machine_headroom(api: CloudStackAPI) -> int | None:
    """VMs the account may still create: listAccounts' vmavailable ('Unlimited' or a number)."""
    accounts = api.call("listAccounts", {}).get("account", [])
    if not accounts:
        return None
    available = str(accounts[0].get("vmavailable", "Unlimited"))
    return None if not available.lstrip("-").isdigit() else max(int(available), 0)
