"""The docs stay true: every command has help and a README entry; every example validates.

Real: the CLI in-process, the validators (YAML, cloud-init schema, systemd-analyze).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sf_testkit import EXAMPLES, REPO, Workspace

from stackfleet.cli.main import COMMANDS, cli

README = (REPO / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help_and_a_readme_entry(name: str, ws: Workspace) -> None:
    result = ws.run(name, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.stdout and len(result.stdout.splitlines()) > 3
    assert f"stackfleet {name}" in README
    assert cli.get_command(None, name) is not None  # type: ignore[arg-type]


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_validates(example: Path, ws: Workspace) -> None:
    result = ws.run("validate", "-f", str(example))
    assert result.exit_code == 0, result.stderr
    assert "ok" in result.stderr


def test_init_writes_a_spec_that_validates(ws: Workspace) -> None:
    path = ws.root / "stackfleet.yaml"
    assert ws.run("init", "-f", str(path), "--name", "fresh").exit_code == 0
    assert ws.run("validate", "-f", str(path)).exit_code == 0
    again = ws.run("init", "-f", str(path))
    assert again.exit_code == 2 and "--force" in again.stderr


def test_schema_is_json_and_describes_the_spec(ws: Workspace) -> None:
    import json

    schema = json.loads(ws.run("schema").stdout)
    assert schema["required"] == ["name", "cloud", "roles"]
    assert set(schema["properties"]["roles"]["properties"]) == {"etcd", "control", "workers"}
