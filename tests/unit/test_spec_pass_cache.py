"""A spec that passed the schema check is not checked again until it, the schema or the
checking code changes; a spec that failed is checked every time.

Real: spec parsing and the jsonschema check; the markers in $STACKFLEET_HOME/cache.
Replaced, to see whether the check ran: stackfleet.spec_schema._problems, wrapped.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from stackfleet import spec_schema
from stackfleet.errors import SpecError
from stackfleet.spec import parse_spec

VALID: dict[str, Any] = {
    "name": "demo",
    "cloud": {"zone": "z"},
    "roles": {"etcd": {"count": 3}, "control": {"count": 1}, "workers": {"count": 2}},
    "access": {"ssh_cidrs": ["203.0.113.0/24"], "api_cidrs": ["203.0.113.0/24"]},
}


@pytest.fixture
def checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every document the real schema check looked at, in order."""
    monkeypatch.setenv("STACKFLEET_HOME", str(tmp_path / "home"))
    seen: list[Any] = []
    real = spec_schema._problems

    def counted(data: Any) -> list[tuple[str, str]]:
        seen.append(copy.deepcopy(data))
        return real(data)

    monkeypatch.setattr(spec_schema, "_problems", counted)
    return seen


def test_a_spec_that_passed_is_not_checked_again(checks: list[Any], tmp_path: Path) -> None:
    assert parse_spec(copy.deepcopy(VALID)).name == "demo"
    assert parse_spec(copy.deepcopy(VALID)).name == "demo"
    assert len(checks) == 1
    assert len(list((tmp_path / "home" / "cache" / "spec-passed").iterdir())) == 1


def test_an_edit_is_checked_again(checks: list[Any]) -> None:
    parse_spec(copy.deepcopy(VALID))
    edited = copy.deepcopy(VALID)
    edited["roles"]["workers"]["count"] = 5
    assert len(parse_spec(edited).machine_names()) == 3 + 1 + 5
    assert len(checks) == 2


def test_a_spec_that_failed_is_checked_and_refused_every_time(checks: list[Any]) -> None:
    bad = copy.deepcopy(VALID)
    bad["cloud"]["concurrency"] = "many"
    for _ in range(2):
        with pytest.raises(SpecError, match=r"cloud\.concurrency"):
            parse_spec(copy.deepcopy(bad))
    assert len(checks) == 2


def test_another_schema_is_another_check(
    checks: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    parse_spec(copy.deepcopy(VALID))
    monkeypatch.setattr(spec_schema, "_checker_fingerprint", lambda: b"a newer stackfleet")
    parse_spec(copy.deepcopy(VALID))
    assert len(checks) == 2


def test_a_read_only_home_only_costs_the_next_check(
    checks: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("")
    monkeypatch.setenv("STACKFLEET_HOME", str(blocker))  # cache/ cannot be made under it
    for _ in range(2):
        assert parse_spec(copy.deepcopy(VALID)).name == "demo"
    assert len(checks) == 2
