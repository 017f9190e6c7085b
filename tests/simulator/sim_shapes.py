"""Shape comparison between the simulator's answers and recorded real CloudStack answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONFORMANCE = Path(__file__).resolve().parents[2].parent / "shared" / "conformance"


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "null"


def _old_fixture_variant(key: str, real: Any, ours: Any) -> bool:
    """Early CloudStack versions (some libcloud fixtures) used integer ids and "true" strings;
    the newer shape (string UUIDs, booleans) wins, as the conformance README says."""
    if (
        kind(real) == "number"
        and kind(ours) == "string"
        and (key in ("id", "related") or key.endswith("id"))
    ):
        return True
    return key == "success" and real == "true" and ours is True


def compare(real: Any, ours: Any, path: str, tolerated: set[str], problems: list[str]) -> None:
    if kind(real) != kind(ours):
        problems.append(f"{path}: real {kind(real)}, ours {kind(ours)}")
        return
    if isinstance(real, dict):
        for key, value in real.items():
            sub = f"{path}.{key}" if path else key
            if key not in ours:
                if sub not in tolerated and key not in tolerated:
                    problems.append(f"{sub}: missing")
                continue
            if _old_fixture_variant(key, value, ours[key]):
                continue
            compare(value, ours[key], sub, tolerated, problems)
    elif isinstance(real, list) and real:
        if not ours:
            if f"{path}[]" not in tolerated:
                problems.append(f"{path}: real has {len(real)} element(s), ours none")
            return
        # Every element of both sides: each must match some element of the other (a list
        # may mix variants, e.g. CIDR and group-to-group rules); else the closest one's
        # problems are reported, each once.
        found: list[str] = []
        for r in real:
            found += _closest(r, ours, f"{path}[]", tolerated, real_first=True)
        for o in ours:
            found += _closest(o, real, f"{path}[]", tolerated, real_first=False)
        problems += [p for i, p in enumerate(found) if p not in found[:i]]


def _closest(
    item: Any, others: list[Any], path: str, tolerated: set[str], real_first: bool
) -> list[str]:
    best: list[str] | None = None
    for other in others:
        found: list[str] = []
        real, ours = (item, other) if real_first else (other, item)
        compare(real, ours, path, tolerated, found)
        if best is None or len(found) < len(best):
            best = found
        if not best:
            break
    return best or []


def references(command: str) -> list[tuple[str, dict[str, Any]]]:
    """(source, inner answer) for every recorded answer of `command`."""
    found: list[tuple[str, dict[str, Any]]] = []
    for path in sorted((CONFORMANCE / "libcloud-cloudstack").glob(f"{command}_*.json")):
        body = json.loads(path.read_text())
        if isinstance(body, dict) and len(body) == 1:
            inner = next(iter(body.values()))
            if isinstance(inner, dict) and "errorcode" not in inner:
                found.append((f"libcloud:{path.name}", inner))
    for path in sorted((CONFORMANCE / "cloudstack-go-simulator").glob("*.json")):
        services = json.loads(path.read_text())
        if command in services:
            inner = next(iter(services[command].values()))
            found.append((f"cloudstack-go:{path.name}:{command}", inner))
    return found
