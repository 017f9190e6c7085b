"""The spec is checked by the `jsonschema` library against exactly the schema `stackfleet
schema` prints, every keyword that schema uses is enforced, and the messages stay ours:
field paths, words with examples instead of regexes, "did you mean".

Real: the jsonschema library (Draft 2020-12 validator, and Draft 7 as editors running
yaml-language-server implement it), spec parsing, the CLI in-process for `schema`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft7Validator, Draft202012Validator, validators
from sf_testkit import Workspace

from stackfleet.artifacts import ARTIFACT_NAMES
from stackfleet.errors import SpecError
from stackfleet.spec import parse_spec
from stackfleet.spec_schema import SCHEMA, _validator, schema_problems

SHA = "ab" * 32
PIN = {"file": "e.tgz", "url": "https://x.example/e.tgz", "version": "1.2.3", "sha256": SHA}
ROLE = {"count": 1, "template": "t", "offering": "o", "disk_gb": 20}
# Every field the schema knows, each set to a value it accepts. (`file` and `url` in one
# pin is a cross-field error, not a schema one, so one spec can carry both paths.)
FULL: dict[str, Any] = {
    "name": "demo",
    "cloud": {
        "provider": "cloudstack",
        "profile": "simulator",
        "endpoint": "https://cloud.example.com/client/api",
        "zone": "z",
        "bootstrap": "auto",
        "concurrency": 8,
        "timeout_s": 1800,
        "userdata_limit": 32768,
        "simulator": {"hypervisor": "qemu", "mirror": "m"},
    },
    "os": "flatcar",
    "roles": {"etcd": dict(ROLE), "control": dict(ROLE), "workers": dict(ROLE)},
    "network": {
        "pod_cidr": "10.244.0.0/16",
        "service_cidr": "10.96.0.0/12",
        "flannel_backend": "vxlan",
    },
    "etcd": {"heartbeat_ms": 500, "election_timeout_ms": 5000},
    "access": {
        "ssh_cidrs": ["198.51.100.7/32"],
        "api_cidrs": ["198.51.100.0/24"],
        "nodeport_cidrs": ["2001:db8::/64"],
    },
    "kubernetes": {"version": "1.31.4"},
    "artifacts": {"base_url": "http://mirror.internal/x", **{n: dict(PIN) for n in ARTIFACT_NAMES}},
    "state": "s3://bucket/prefix",
    "ttl": "1h30m",
}

# Keywords that assert nothing (annotations): they document, and editors show them.
# `errorMessage` is read by ajv-errors and VS Code's JSON service: the words for a failed
# pattern; the pattern cases below check that our messages use it.
ANNOTATIONS = {"$schema", "$id", "title", "description", "default", "examples", "errorMessage"}

Path = tuple[str | int, ...]
Case = tuple[Any, Path, str]  # (the whole spec, broken; the field refused; what broke)


def _set(data: Any, path: Path, value: Any) -> Any:
    if not path:
        return value
    data = copy.deepcopy(data)
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return data


def _drop(data: Any, path: Path) -> Any:
    data = copy.deepcopy(data)
    node = data
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return data


def _wrong_type(kind: str) -> Any:
    return {"object": "text", "array": "text", "string": ["a", "list"], "integer": "7"}[kind]


def _not_matching(pattern: str) -> str:
    for text in ("!!", "a b", "Z"):
        if not re.search(pattern, text):
            return text
    raise AssertionError(f"no non-matching sample for {pattern}")


def _cases(keyword: str, sub: dict[str, Any], path: Path) -> Iterator[Case]:
    """Specs that break `keyword` of the schema object `sub` found at `path`."""
    value = sub[keyword]
    if keyword == "type":
        yield _set(FULL, path, _wrong_type(value)), path, keyword
    elif keyword == "required":
        for key in value:
            yield _drop(FULL, (*path, key)), (*path, key), keyword
    elif keyword == "additionalProperties":
        assert value is False, "a schema for additionalProperties needs its own case"
        yield _set(FULL, (*path, "zz_unknown"), 1), (*path, "zz_unknown"), keyword
    elif keyword == "properties":
        for key, child in value.items():
            yield _set(FULL, (*path, key), _wrong_type(child["type"])), (*path, key), keyword
    elif keyword == "items":
        yield _set(FULL, path, [_wrong_type(value["type"])]), (*path, 0), keyword
    elif keyword == "minimum":
        yield _set(FULL, path, value - 1), path, keyword
    elif keyword == "maximum":
        yield _set(FULL, path, value + 1), path, keyword
    elif keyword == "minLength":
        yield _set(FULL, path, "a" * (value - 1)), path, keyword
    elif keyword == "maxLength":
        yield _set(FULL, path, "a" * (value + 1)), path, keyword
    elif keyword == "pattern":
        yield _set(FULL, path, _not_matching(value)), path, keyword
    elif keyword == "enum":
        yield _set(FULL, path, "no-such-choice"), path, keyword
    elif keyword == "format":
        assert value == "cidr", f"format {value!r} needs its own case"
        yield _set(FULL, path, "10.0.0.300/8"), path, keyword
    else:
        raise AssertionError(
            f"the schema uses {keyword!r} at {path or 'the top'}: add a case that breaks it "
            "(and words for it in spec_schema._words), or list it in ANNOTATIONS"
        )


def _walk(sub: dict[str, Any], path: Path = ()) -> Iterator[tuple[str, dict[str, Any], Path]]:
    """(keyword, schema object, instance path) for every keyword the schema uses."""
    for keyword in sub:
        yield keyword, sub, path
    for key, child in sub.get("properties", {}).items():
        yield from _walk(child, (*path, key))
    if isinstance(sub.get("items"), dict):
        yield from _walk(sub["items"], (*path, 0))


def _all_cases() -> list[Case]:
    return [
        case
        for keyword, sub, path in _walk(SCHEMA)
        if keyword not in ANNOTATIONS
        for case in _cases(keyword, sub, path)
    ]


CASES = _all_cases()


def _dotted(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text or "(top level)"


def test_full_spec_sets_every_field_and_passes() -> None:
    fields = {path for keyword, _, path in _walk(SCHEMA) if keyword == "type"}
    for path in fields:
        node: Any = FULL
        for part in path:
            node = node[part]  # a KeyError here: FULL lacks a field the schema added
    assert schema_problems(FULL) == []


def test_every_keyword_the_schema_uses_has_a_case() -> None:
    used = {keyword for keyword, _, _ in _walk(SCHEMA)}
    covered = {keyword for _, _, keyword in CASES}
    assert used - ANNOTATIONS == covered
    # and the cases reach every field: one per (keyword, field) pair, at least 100 in all
    assert len(CASES) >= 100, len(CASES)


@pytest.mark.parametrize(
    ("spec", "path", "keyword"),
    CASES,
    ids=[f"{keyword}:{_dotted(path)}" for _, path, keyword in CASES],
)
def test_every_keyword_is_enforced(spec: Any, path: Path, keyword: str) -> None:
    problems = dict(schema_problems(spec))
    where = _dotted(path)
    assert where in problems, (keyword, problems)
    message = problems[where]
    # Words, never the schema's regex or jsonschema's own phrasing.
    assert "does not match" not in message and "^" not in message, message
    assert "is a required property" not in message and "unexpected" not in message, message
    with pytest.raises(SpecError) as err:
        parse_spec(spec)
    assert f"{where}: {message}" in str(err.value)
    if keyword != "format":  # editors skip formats they do not know; we assert `cidr`
        # What an editor implementing draft 7 (yaml-language-server) refuses too.
        assert not Draft7Validator(SCHEMA).is_valid(spec)


def test_the_checker_uses_exactly_the_printed_schema(ws: Workspace) -> None:
    printed = ws.run("schema").json()
    assert printed == SCHEMA
    assert _validator().schema is SCHEMA
    # The validator is the one the schema's $schema names, and the schema is valid for it.
    assert validators.validator_for(printed) is Draft202012Validator
    assert type(_validator()).META_SCHEMA == Draft202012Validator.META_SCHEMA
    Draft202012Validator.check_schema(printed)
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert re.fullmatch(r"https://[a-z.]+/schema/spec-v[0-9]+\.json", printed["$id"])


def test_every_pattern_has_words_with_an_example_instead_of_the_regex() -> None:
    patterns = [(path, sub) for keyword, sub, path in _walk(SCHEMA) if keyword == "pattern"]
    assert patterns
    for path, sub in patterns:
        words = sub.get("errorMessage", "")
        assert words and sub["pattern"] not in words, path
    example = re.compile(r"e\.g\.|such as|hex characters")
    assert all(example.search(sub["errorMessage"]) for _, sub in patterns)


GOOD = {"name": "demo", "cloud": {"zone": "z"}, "roles": {"etcd": {"count": 1}}}


@pytest.mark.parametrize(
    ("ttl", "seconds"),
    [("90m", 5400), ("1h30m", 5400), ("2d", 172800), ("3600s", 3600), ("1d12h", 129600)],
)
def test_ttl_takes_composite_durations(ttl: str, seconds: int) -> None:
    assert parse_spec({**GOOD, "ttl": ttl}).ttl_seconds == seconds


@pytest.mark.parametrize(
    ("ttl", "message"),
    [
        ("1x", "'1x' is not a duration: use e.g. 90m, 1h30m, 2d"),
        ("2 weeks", "'2 weeks' is not a duration: use e.g. 90m, 1h30m, 2d"),
        (90, "90 is not a duration: use e.g. 90m, 1h30m, 2d"),
        ("0h0m", "'0h0m' is zero: give a positive duration such as 90m, 1h30m, 2d"),
        ("400d", "'400d' is longer than 365d: leave ttl out for a cluster that stays"),
    ],
)
def test_bad_ttl_says_what_a_duration_looks_like(ttl: Any, message: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec({**GOOD, "ttl": ttl})
    assert err.value.problems == [("ttl", message)]


def _problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    return err.value.problems


def test_unknown_keys_and_choices_get_did_you_mean() -> None:
    assert _problems({**GOOD, "colour": "red", "os": "flatcr"}) == [
        ("colour", "unknown key (did you mean 'cloud'?)"),
        ("os", "must be one of flatcar, ubuntu, not 'flatcr' (did you mean 'flatcar'?)"),
    ]
    assert _problems({**GOOD, "roles": {"etcd": {"count": 1}, "masters": {"count": 1}}}) == [
        ("roles.masters", "unknown key (known: etcd, control, workers)")
    ]


def test_one_problem_per_field_the_most_telling() -> None:
    # Too long and upper case: the pattern's words, which give the length too.
    ((where, message),) = _problems({**GOOD, "name": "X" * 30})
    assert (where, message) == ("name", f"{'X' * 30!r} is not a cluster name: " + NAME_WORDS)
    # Only too long: the length.
    assert _problems({**GOOD, "name": "x" * 30}) == [
        ("name", f"{'x' * 30!r} is 30 characters long, over the 24 allowed")
    ]
    # A list where a name belongs: its type, not its pattern too.
    assert _problems({**GOOD, "name": ["demo"]}) == [("name", "must be a string, not ['demo']")]


NAME_WORDS = (
    "use 2-24 lower-case letters, digits and '-', starting with a letter and ending with a "
    "letter or digit, e.g. prod-eu-1"
)


def test_every_problem_is_reported_at_once_with_its_path() -> None:
    data = {
        "name": "demo",
        "cloud": {"zone": "z", "concurrency": 0},
        "roles": {"etcd": {"count": 2}, "workers": {"count": 3.0}},
        "access": {"ssh_cidrs": ["10.0.0.1/8"]},
    }
    assert sorted(_problems(data)) == [
        ("access.ssh_cidrs[0]", "'10.0.0.1/8' has host bits set: did you mean 10.0.0.0/8?"),
        ("cloud.concurrency", "must be between 1 and 64, not 0"),
        (
            "roles.etcd.count",
            "2 is even: an even member count tolerates no more failures than one fewer; use 1 or 3",
        ),
        # JSON Schema calls 3.0 an integer; a count written so is a typo we refuse.
        ("roles.workers.count", "must be a whole number, not 3.0"),
    ]


def test_a_number_where_text_belongs_says_to_quote_it_when_that_would_do() -> None:
    digits = "1" * 64  # a sha256 of digits only: YAML reads a number
    pin = {"url": "https://x.example/e", "version": "1.2.3", "sha256": int(digits)}
    problems = _problems({**GOOD, "artifacts": {"etcd": pin}})
    assert problems == [("artifacts.etcd.sha256", f"must be a string, not {digits} (quote it)")]


def test_messages_fit_one_line_even_for_huge_values() -> None:
    problems = _problems({**GOOD, "cloud": {"zone": "z", "endpoint": "x" * 5000}})
    ((where, message),) = problems
    assert where == "cloud.endpoint" and len(message) < 200 and "\n" not in message
