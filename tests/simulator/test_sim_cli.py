"""`stackfleet simulator serve` as a user runs it: real subprocesses, real exit codes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sf_serve import SERVE


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SERVE, *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_help_documents_every_option() -> None:
    from click.testing import CliRunner

    from stackfleet.cli.simulator_cmd import serve

    out = CliRunner().invoke(serve, ["--help"]).output
    for param in serve.params:
        assert param.help, f"{param.name} has no help"
        assert f"--{param.name.replace('_', '-')}" in out or param.name == "state"
    assert "--state" in out


@pytest.mark.parametrize(
    "args",
    [
        ["--latency", "deployVirtualMachine=soon"],
        ["--faults", "drop=2"],
        ["--faults", "explode=0.1"],
        ["--port", "-1"],
        ["--no-such-flag"],
    ],
)
def test_bad_flags_exit_2_without_traceback(args: list[str]) -> None:
    result = _serve(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "Error:" in result.stderr


def test_corrupt_state_file_is_one_line_exit_2(tmp_path: Path) -> None:
    state = tmp_path / "cloud.db"
    state.write_bytes(b"this is not sqlite" * 100)
    result = _serve("--port", "0", "--state", str(state))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "file is not a database" in result.stderr
