"""Shell completion, as the README documents it: commands, options and node names.

Real: the stackfleet program as a subprocess, driven through click's completion protocol
(the environment variables bash's generated completion function sets), and bash itself
sourcing the generated script. No cloud is called: node names come from the spec.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sf_testkit import Workspace


def _complete(cwd: Path, *words: str) -> list[str]:
    env = {
        **os.environ,
        "_STACKFLEET_COMPLETE": "bash_complete",
        "COMP_WORDS": " ".join(("stackfleet", *words)),
        "COMP_CWORD": str(len(words)),
    }
    out = subprocess.run(
        [sys.executable, "-m", "stackfleet"], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return [line.split(",", 1)[1] for line in out.stdout.splitlines() if "," in line]


def test_node_names_complete_from_the_spec_short_and_offline(ws: Workspace) -> None:
    spec = ws.spec("demo", roles={"etcd": {"count": 3}, "control": {"count": 1}})
    (ws.root / "stackfleet.yaml").write_text(spec.read_text())
    assert _complete(ws.root, "ssh", "etcd") == ["etcd-1", "etcd-2", "etcd-3"]
    assert "worker-2" in _complete(ws.root, "ssh", "")
    # -f names another spec: its nodes, not the default file's.
    other = ws.spec("other", roles={"etcd": {"count": 1}, "control": {"count": 0},
                                    "workers": {"count": 0}})  # fmt: skip
    assert _complete(ws.root, "ssh", "-f", str(other), "") == ["etcd-1"]
    # Nothing was dialled: no simulator state was made.
    assert not (ws.home / "simulator").exists()


def test_a_broken_spec_completes_nothing_and_prints_no_error(ws: Workspace) -> None:
    (ws.root / "stackfleet.yaml").write_text("name: [not, a, name]\n")
    assert _complete(ws.root, "ssh", "") == []


def test_commands_complete_and_bash_sources_the_generated_script(ws: Workspace) -> None:
    assert {"up", "plan", "status", "down", "ssh"} <= set(_complete(ws.root, ""))
    script = subprocess.run(
        [sys.executable, "-m", "stackfleet"],
        env={**os.environ, "_STACKFLEET_COMPLETE": "bash_source"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    checked = subprocess.run(
        ["bash", "-c", script + "\ncomplete -p stackfleet"], capture_output=True, text=True
    )
    assert checked.returncode == 0 and "stackfleet" in checked.stdout, checked.stderr
