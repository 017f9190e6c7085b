"""The spec's JSON Schema, and the spec checked against it by the `jsonschema` library.

SCHEMA is the one description of the format: `stackfleet schema` prints it, editors read
it (the modeline `stackfleet init` writes), and `schema_problems` validates against
exactly it, with the validator its `$schema` names. jsonschema's errors then become the
lines users read: the field's path (`roles.workers.count`), words with an example instead
of a regex, and "did you mean" for unknown keys.

Every `pattern` carries an `errorMessage` (as ajv-errors and VS Code's JSON service read
it): the words shown when the pattern fails, in editors and here alike. The schema uses
only keywords that mean the same in drafts 7 and 2020-12, so editors that implement
draft 7 (yaml-language-server) check what we check.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import ipaddress
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stackfleet import etcd_timing, flavors, roles
from stackfleet.artifacts import ARTIFACT_NAMES, FILE_NAME_PATTERN
from stackfleet.provisioners.registry import DEFAULT_PROVIDER, PROVIDERS, userdata_rule

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator

# An identifier, not a download: nothing is served there. Versioned, so that a spec
# format that changes incompatibly gets a new one.
SCHEMA_ID = "https://stackfleet.dev/schema/spec-v1.json"

NAME_PATTERN = r"^[a-z][a-z0-9-]*[a-z0-9]$"
NAME_MAX = 24
# One or more <number><unit> parts, summed: 90m, 1h30m, 2d, 3600s.
DURATION_PATTERN = r"^([0-9]+[smhd])+$"
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_EXAMPLES = "90m, 1h30m, 2d"
# The `os:` values: one per Flavor (stackfleet/flavors.py).
FLAVORS = tuple(flavors.FLAVORS)
STRATEGIES = ("auto", "allocate", "reboot", "ssh")
# spec key -> machine role (as tagged on machines and used in names): stackfleet/roles.py
ROLE_KEYS = {r.spec_key: r.name for r in roles.ROLES.values()}

_role_schema: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "count": {"type": "integer", "minimum": 0, "maximum": 200},
        "template": {"type": "string", "minLength": 1, "description": "name or id"},
        "offering": {"type": "string", "minLength": 1, "description": "name or id"},
        "disk_gb": {"type": "integer", "minimum": 8, "maximum": 4096},
    },
    "required": ["count"],
}
_cidr_list = {"type": "array", "items": {"type": "string", "format": "cidr"}}
_http_url = "must be an http(s) URL such as https://cloud.example.com/client/api"
# One artifact chosen by the spec.
_pin_schema: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "sha256"],
    "description": "use this file instead of the built-in pin: exactly one of file or url",
    "properties": {
        "file": {
            "type": "string",
            "pattern": FILE_NAME_PATTERN,
            "errorMessage": "must be a plain file name under artifacts.base_url, "
            "e.g. etcd-v3.5.1-linux-amd64.tar.gz",
            "description": "a file name under artifacts.base_url",
        },
        "url": {
            "type": "string",
            "pattern": r"^https?://\S+$",
            "errorMessage": "must be an absolute http(s) URL, "
            "e.g. https://builds.example.com/etcd.tar.gz",
        },
        "version": {
            "type": "string",
            "pattern": r"^v?[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$",
            "errorMessage": "must be a version such as 3.5.1",
        },
        "sha256": {
            "type": "string",
            "pattern": "^[0-9A-Fa-f]{64}$",
            "errorMessage": "must be 64 hex characters (the file's sha256sum)",
        },
    },
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "title": "stackfleet cluster spec",
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "cloud", "roles"],
    "properties": {
        "name": {
            "type": "string",
            "pattern": NAME_PATTERN,
            "maxLength": NAME_MAX,
            "errorMessage": "is not a cluster name: use 2-24 lower-case letters, digits and "
            "'-', starting with a letter and ending with a letter or digit, e.g. prod-eu-1",
            "description": "cluster name: lower-case letters, digits and '-', 2-24 chars",
            "examples": ["demo", "prod-eu-1"],
        },
        "cloud": {
            "type": "object",
            "additionalProperties": False,
            "required": ["zone"],
            "properties": {
                "provider": {
                    "type": "string",
                    "enum": list(PROVIDERS),
                    "default": DEFAULT_PROVIDER,
                    "description": "which cloud API: "
                    + "; ".join(f"{p.name}: {p.about}" for p in PROVIDERS.values()),
                },
                "profile": {
                    "type": "string",
                    "description": "'simulator', or the credentials' profile: a section of "
                    "cloudstack.ini, an account of exoscale's config",
                },
                "endpoint": {
                    "type": "string",
                    "pattern": "^https?://",
                    "errorMessage": _http_url,
                },
                "zone": {"type": "string", "minLength": 1, "description": "name or id"},
                "bootstrap": {"type": "string", "enum": list(STRATEGIES)},
                "concurrency": {"type": "integer", "minimum": 1, "maximum": 64},
                "timeout_s": {"type": "integer", "minimum": 30, "maximum": 7200},
                "userdata_limit": {
                    "type": "integer",
                    "minimum": 1024,
                    "maximum": 1048576,
                    "default": userdata_rule(DEFAULT_PROVIDER).default_limit,
                    "description": "largest userdata the cloud accepts, as it counts it "
                    "(cloudstack: base64 characters, its vm.userdata.max.length setting)",
                },
                "simulator": {
                    "type": "object",
                    "additionalProperties": False,
                    "description": "with profile: simulator, the embedded simulator's settings",
                    "properties": {
                        "hypervisor": {
                            "type": "string",
                            "enum": ["simulator", "qemu"],
                            "description": "qemu: boot the VMs as real guests (needs root)",
                        },
                        "mirror": {
                            "type": "string",
                            "minLength": 1,
                            "description": "folder the QEMU guests' router serves on port 8090",
                        },
                    },
                },
            },
        },
        "os": {"type": "string", "enum": list(FLAVORS)},
        "roles": {
            "type": "object",
            "additionalProperties": False,
            "required": ["etcd"],
            "properties": {key: _role_schema for key in ROLE_KEYS},
        },
        "network": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "pod_cidr": {"type": "string", "format": "cidr"},
                "service_cidr": {"type": "string", "format": "cidr"},
                "flannel_backend": {"type": "string", "enum": ["vxlan", "host-gw"]},
            },
        },
        etcd_timing.SECTION: {
            "type": "object",
            "additionalProperties": False,
            "description": "etcd's raft timing: raise both where round trips or disks are "
            "slow (etcd's tuning guide); the election timeout is at least 5 heartbeats and "
            "at most 50 s",
            "properties": {
                "heartbeat_ms": {
                    "type": "integer",
                    "minimum": 10,
                    "maximum": etcd_timing.MAX_ELECTION_TIMEOUT_MS
                    // etcd_timing.MIN_ELECTION_HEARTBEATS,
                    "default": etcd_timing.DEFAULT_HEARTBEAT_MS,
                    "description": "how often the leader tells the members it is there (ms)",
                },
                "election_timeout_ms": {
                    "type": "integer",
                    "minimum": 50,
                    "maximum": etcd_timing.MAX_ELECTION_TIMEOUT_MS,
                    "default": etcd_timing.DEFAULT_ELECTION_TIMEOUT_MS,
                    "description": "how long a member waits for the leader before it "
                    "calls an election (ms): at least 5 heartbeats",
                },
            },
        },
        "access": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "ssh_cidrs": _cidr_list,
                "api_cidrs": _cidr_list,
                "nodeport_cidrs": _cidr_list,
            },
        },
        "kubernetes": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "version": {
                    "type": "string",
                    "pattern": r"^1\.[0-9]+\.[0-9]+$",
                    "errorMessage": "is not a Kubernetes version: use e.g. 1.31.4",
                }
            },
        },
        "artifacts": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "base_url": {
                    "type": "string",
                    "pattern": "^https?://",
                    "errorMessage": "must be an http(s) URL such as "
                    "http://mirror.internal/stackfleet",
                    "description": "a mirror serving the upstream file names",
                },
                **{name: _pin_schema for name in ARTIFACT_NAMES},
            },
        },
        "state": {
            "type": "string",
            "pattern": r"^(s3://[^/?\s]+(/[^?\s]*)?(\?\S*)?|file:///\S*|/\S*|local)$",
            "errorMessage": "is not a state store: use e.g. s3://bucket/prefix, "
            "file:///path or local",
            "description": "where the PKI lives besides this machine: s3://bucket/prefix "
            "(README: State store); default the local folder",
        },
        "ttl": {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "errorMessage": f"is not a duration: use e.g. {DURATION_EXAMPLES}",
            "description": "expiry after `up`: numbers with s, m, h or d, e.g. 90m, 1h30m, "
            "2d; `down --expired` removes it",
            "examples": ["90m", "1h30m", "2d"],
        },
    },
}


# --- the check ------------------------------------------------------------------------
def schema_problems(data: Any) -> list[tuple[str, str]]:
    """(field path, message) for every field the schema refuses, the most telling one per
    field (a wrong type before a bad pattern), in the order jsonschema finds them.

    A document that passed before, under this very schema and checker code, is not checked
    again (see _pass_marker): importing jsonschema is a tenth of a second of every
    command's start, and most commands read the spec an earlier one already checked."""
    marker = _pass_marker(data)
    if marker is not None and marker.exists():
        return []
    problems = _problems(data)
    if marker is not None and not problems:
        with contextlib.suppress(OSError):  # a read-only home only costs the next check
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
    return problems


def _pass_marker(data: Any) -> Path | None:
    """$STACKFLEET_HOME/cache/spec-passed/<hash of the document, the schema and the code
    that checks it>: an empty file, made when that document passed. Any edit to the spec,
    the schema or this module is another name. None for a document that cannot be hashed
    (it is then simply checked)."""
    from stackfleet import state

    try:
        document = json.dumps(data, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):  # keys of mixed types, dates, NaN: just check it
        return None
    digest = hashlib.sha256(_checker_fingerprint() + document.encode()).hexdigest()
    return state.home() / "cache" / "spec-passed" / digest


@functools.cache
def _checker_fingerprint() -> bytes:
    schema = json.dumps(SCHEMA, sort_keys=True, default=repr).encode()
    return hashlib.sha256(schema + Path(__file__).read_bytes()).digest()


def _problems(data: Any) -> list[tuple[str, str]]:
    best: dict[str, tuple[int, str]] = {}
    for error in _validator().iter_errors(data):
        for path, rank, message in _explain(error):
            if path not in best or rank < best[path][0]:
                best[path] = (rank, message)
    return [(path, message) for path, (_, message) in best.items()]


@functools.cache
def _validator() -> Validator:
    """The validator SCHEMA's `$schema` names (draft 2020-12), with two additions: the
    `cidr` format asserted, and `integer` meaning a whole number as written (JSON Schema
    also takes 3.0; a count of 3.0 is a typo, and the cloud API wants 3)."""
    from jsonschema import FormatChecker, validators

    base = validators.validator_for(SCHEMA)
    types = base.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
    )
    strict = validators.extend(base, type_checker=types)
    formats = FormatChecker(formats=())
    formats.checks("cidr", raises=ValueError)(_check_cidr)
    return strict(SCHEMA, format_checker=formats)


def _check_cidr(value: Any) -> bool:
    """The `cidr` format: a network such as 10.0.0.0/16; the reason, if not, is the
    ValueError's text (shown after the value)."""
    if not isinstance(value, str):
        return True  # the type keyword speaks for it
    if "/" not in value:
        raise ValueError("is not a CIDR such as 10.0.0.0/16")
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError("is not a CIDR such as 10.0.0.0/16") from None
    if not _is_network(value):
        raise ValueError(f"has host bits set: did you mean {network}?")
    return True


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=True)
    except ValueError:
        return False
    return True


# Which error to show when one field breaks several keywords (lower first): a pattern's
# words say the most (the name's also give its length), bounds and lengths come last.
_RANK = {"type": 0, "required": 1, "additionalProperties": 1, "enum": 2, "format": 3, "pattern": 3}
_TYPE_WORDS = {
    "object": "must be a mapping",
    "array": "must be a list",
    "integer": "must be a whole number",
    "string": "must be a string",
}


def _explain(error: ValidationError) -> Iterator[tuple[str, int, str]]:
    """(path, rank, message) for one jsonschema error: `required` and
    `additionalProperties` name each key they concern, the rest the field itself."""
    where = list(error.absolute_path)
    value: Any = error.instance
    keyword = str(error.validator)
    # An error comes from a schema object (a `false` schema is not used).
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    rank = _RANK.get(keyword, 4)
    if keyword == "required":
        for key in schema["required"]:
            if isinstance(value, dict) and key not in value:
                yield _path([*where, key]), rank, "is required"
    elif keyword == "additionalProperties":
        known = schema.get("properties", {})
        for key in value:
            if key not in known:
                hint = _did_you_mean(str(key), known)
                yield _path([*where, str(key)]), rank, f"unknown key{hint}"
    else:
        yield _path(where), rank, _words(keyword, value, schema, error)


def _words(keyword: str, value: Any, schema: Mapping[str, Any], error: ValidationError) -> str:
    shown = _shown(value)
    if keyword == "type":
        said = _TYPE_WORDS.get(str(schema["type"]), f"must be of type {schema['type']}")
        if schema["type"] in ("object", "array"):
            return said
        if schema["type"] == "string" and _is_number(value):
            # YAML read `ttl: 90` or `sha256: 1234...` as a number: quoting helps only
            # when the text itself would do.
            if "errorMessage" in schema and not re.search(schema["pattern"], str(value)):
                return f"{shown} {schema['errorMessage']}"
            return f"{said}, not {shown} (quote it)"
        return f"{said}, not {shown}"
    if keyword == "enum":
        choices = [str(c) for c in schema["enum"]]
        hint = _did_you_mean(value, choices, known=False) if isinstance(value, str) else ""
        return f"must be one of {', '.join(choices)}, not {shown}{hint}"
    if keyword in ("minimum", "maximum"):
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and high is not None:
            return f"must be between {low} and {high}, not {shown}"
        return f"must be at least {low}" if keyword == "minimum" else f"must be at most {high}"
    if keyword == "minLength":
        if schema["minLength"] == 1:
            return "must not be empty"
        return f"{shown} is shorter than {schema['minLength']} characters"
    if keyword == "maxLength":
        return f"{shown} is {len(value)} characters long, over the {schema['maxLength']} allowed"
    if keyword == "pattern":
        return f"{shown} {schema.get('errorMessage', 'does not match ' + schema['pattern'])}"
    if keyword == "format":
        return f"{shown} {error.cause or 'is not a ' + schema['format']}"
    return error.message  # a keyword the schema does not use yet (a test asks for words)


def _path(parts: Sequence[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "(top level)"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _did_you_mean(word: str, choices: Any, known: bool = True) -> str:
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known: {', '.join(map(str, choices))})" if known else ""
