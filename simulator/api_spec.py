"""CloudStack 4.18's own listApis entries for the implemented commands (data/listApis-subset.json).

Parameters are named, required and typed from it, exactly as the real ApiDispatcher does:
missing required -> 431/9999, a malformed number -> 431/9999; unknown parameters are ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from stackfleet.simulator import errors

_INDEXED = re.compile(r"^([A-Za-z0-9_]+)\[(\d+)\]\.(.+)$")


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    required: bool
    length: int


@dataclass(frozen=True)
class Api:
    name: str
    isasync: bool
    params: dict[str, Param]
    raw: dict[str, Any]


@cache
def load() -> dict[str, Api]:
    text = resources.files("stackfleet.simulator").joinpath("data/listApis-subset.json").read_text()
    apis: dict[str, Api] = {}
    for entry in json.loads(text)["api"]:
        params = {
            p["name"]: Param(p["name"], p["type"], bool(p["required"]), int(p.get("length", 255)))
            for p in entry["params"]
        }
        apis[entry["name"]] = Api(entry["name"], bool(entry["isasync"]), params, entry)
    return apis


def maps(params: dict[str, str], name: str) -> list[dict[str, str]]:
    """`tags[0].key=a&tags[0].value=b` -> [{"key": "a", "value": "b"}], ordered by index."""
    found: dict[int, dict[str, str]] = {}
    for key, value in params.items():
        match = _INDEXED.match(key)
        if match and match.group(1).lower() == name:
            found.setdefault(int(match.group(2)), {})[match.group(3).lower()] = value
    return [found[i] for i in sorted(found)]


def check(api: Api, params: dict[str, str]) -> None:
    """Required parameters present and numbers well-formed, as ParamProcessWorker checks them."""
    present = {k.lower() for k in params}
    present |= {m.group(1).lower() for m in map(_INDEXED.match, params) if m}
    for param in api.params.values():
        if param.required and param.name not in present:
            raise errors.missing_param(api.name, param.name)
    for key, value in params.items():
        known = api.params.get(key.lower())
        if known is None:
            continue
        if known.type in ("integer", "long", "short") and not re.fullmatch(r"-?\d+", value):
            raise errors.bad_value(api.name, known.name, value)
