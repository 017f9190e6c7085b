"""The exoscale API v2 as its own OpenAPI spec says: routes, and schema validators.

The spec is `exoscale/openapi.json` from the installed `exoscale` package (PyPI's official
client ships it and builds itself from it), read in place, never copied. OpenAPI 3.0 schemas are
JSON Schema draft 4 with a few extras, so each schema is checked with jsonschema's Draft4Validator
after three rewrites:

- `nullable: true` becomes `anyOf: [<schema>, {"type": "null"}]` (draft 4 has no `nullable`);
- `$ref: "#/components/..."` points into the spec, registered under SPEC_URI;
- an object schema that lists its `properties` and says nothing of others gets
  `additionalProperties: false`, so a field the spec does not document (a typo in the simulator's
  answer, or in a client's body) fails instead of passing unseen.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import unquote

from jsonschema import Draft4Validator, FormatChecker, ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT4

SPEC_URI = "urn:stackfleet:exoscale-openapi-v2"
API_PREFIX = "/v2"


@cache
def spec() -> dict[str, Any]:
    """The raw spec as the installed client ships it."""
    text = resources.files("exoscale").joinpath("openapi.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _prepare(node: Any) -> Any:
    if isinstance(node, list):
        return [_prepare(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _prepare(value) for key, value in node.items()}
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        out["$ref"] = SPEC_URI + ref
    if (
        out.get("type") == "object"
        and isinstance(out.get("properties"), dict)
        and "additionalProperties" not in out
    ):
        out["additionalProperties"] = False
    if out.pop("nullable", False) is True:
        if "$ref" in out:
            out = {"$ref": out["$ref"]}  # draft 4 ignores a $ref's siblings anyway
        return {"anyOf": [out, {"type": "null"}]}
    return out


@cache
def _registry() -> Registry[Any]:
    prepared = _prepare(spec())
    return Registry().with_resource(SPEC_URI, DRAFT4.create_resource(prepared))


@dataclass(frozen=True)
class Operation:
    """One operation of the spec: `create-instance` is POST /instance."""

    id: str
    verb: str
    path: str
    pattern: re.Pattern[str]
    parameters: tuple[dict[str, Any], ...]
    body_schema: dict[str, Any] | None
    response_schema: dict[str, Any] | None

    def match(self, verb: str, path: str) -> dict[str, str] | None:
        if verb != self.verb:
            return None
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        return {self._group_names[k]: unquote(v) for k, v in found.groupdict().items()}

    @property
    def _group_names(self) -> dict[str, str]:
        return {_group(p["name"]): p["name"] for p in self.parameters if p["in"] == "path"}


def _group(name: str) -> str:
    return re.sub(r"\W", "_", name)


def _pattern(path: str) -> re.Pattern[str]:
    pieces = re.split(r"(\{[^}]+\})", path)
    regex = "".join(
        f"(?P<{_group(piece[1:-1])}>[^/:]+)" if piece.startswith("{") else re.escape(piece)
        for piece in pieces
    )
    return re.compile(regex)


def _json_schema(block: dict[str, Any] | None) -> dict[str, Any] | None:
    if not block:
        return None
    content = block.get("content", {}).get("application/json")
    return _prepare(content["schema"]) if content else None


@cache
def operations() -> dict[str, Operation]:
    table: dict[str, Operation] = {}
    for path, item in spec()["paths"].items():
        for verb, op in item.items():
            table[op["operationId"]] = Operation(
                id=op["operationId"],
                verb=verb.upper(),
                path=path,
                pattern=_pattern(path),
                parameters=tuple(op.get("parameters", [])),
                body_schema=_json_schema(op.get("requestBody")),
                response_schema=_json_schema(op.get("responses", {}).get("200")),
            )
    return table


def route(verb: str, path: str) -> tuple[Operation, dict[str, str]] | None:
    """The operation a request names, and its path parameters (path without /v2)."""
    for op in operations().values():
        params = op.match(verb, path)
        if params is not None:
            return op, params
    return None


def problems(schema: dict[str, Any], document: Any) -> list[str]:
    """Every way `document` breaks `schema`, one readable line each (empty: valid)."""
    validator = Draft4Validator(schema, registry=_registry(), format_checker=FormatChecker())
    found = []
    for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in error.absolute_path) or "(body)"
        found.append(f"{where}: {_describe(error)}")
    return found


def _describe(error: ValidationError) -> str:
    # A 40 KB user-data string must not come back whole in an error message: give its size.
    if error.validator in ("maxLength", "minLength") and isinstance(error.instance, str):
        bound = "at most" if error.validator == "maxLength" else "at least"
        return f"{len(error.instance)} characters; the API accepts {bound} {error.validator_value}"
    return re.sub(r"'([^']{60})[^']{20,}'", r"'\1...'", error.message)


def zone_names() -> list[str]:
    names: list[str] = spec()["components"]["schemas"]["zone-name"]["enum"]
    return list(names)


def user_data_limit() -> int:
    """The API's own limit on `user-data` (base64 characters), as create-instance documents it."""
    body = operations()["create-instance"].body_schema or {}
    limit: int = body["properties"]["user-data"]["maxLength"]
    return limit
