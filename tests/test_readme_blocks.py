"""The README, followed literally: its code blocks run, as far as they run offline.

A promise in the README cannot drift from the code: each fenced block is found by what it
holds (not by line number), and a block this file does not know fails the last test, so a
new block gets a check when it is written.

Real: bash running the blocks' lines as written, the stackfleet program as a subprocess,
the embedded CloudStack simulator it starts (HTTP on loopback; its VMs run nothing), our
credential reader on the ini block, click's parser on every command synopsis. Not run: the
set-up line's venv and pip install (CI has just done exactly that) and `bash .ci/run` (it is
what runs this file); the CI pipeline block runs without its S3 state store (the state-store
tests in tests/state_store use a real S3 server).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml
from sf_testkit import REPO, Workspace

from stackfleet.cli.main import cli

README = (REPO / "README.md").read_text()
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
BLOCKS = [(lang, body) for lang, body in FENCE.findall(README)]
CHECKED: set[int] = set()  # indexes of the blocks some test below ran


def block(lang: str, marker: str) -> str:
    """The one block of `lang` that contains `marker`."""
    found = [i for i, (b_lang, body) in enumerate(BLOCKS) if b_lang == lang and marker in body]
    assert len(found) == 1, f"README: {len(found)} {lang} blocks contain {marker!r}"
    CHECKED.add(found[0])
    return BLOCKS[found[0]][1]


def bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # The venv's bin first: `stackfleet` is the program this checkout installed.
    path = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env={**env, "PATH": path},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def env(ws: Workspace) -> dict[str, str]:
    # ws has set STACKFLEET_HOME to a private folder and removed CLOUDSTACK_* credentials.
    return dict(os.environ)


def test_setup_and_quickstart_blocks_run_as_written(ws: Workspace, env: dict[str, str]) -> None:
    setup = block("sh", "pip install").strip()
    steps = [s.strip() for s in setup.split("&&")]
    assert steps[:3] == [
        "python3 -m venv .venv",
        ". .venv/bin/activate",
        "pip install -e '.[test]'",
    ]
    assert "test = [" in (REPO / "pyproject.toml").read_text()  # the extra it installs
    quickstart = block("sh", "stackfleet status -f examples/quickstart.yaml")
    assert steps[3] in quickstart  # the set-up's last step is the quickstart's first line
    lines = [line for line in quickstart.splitlines() if line.strip()]
    outputs = []
    for line in lines:
        done = bash(line, REPO, env)
        assert done.returncode == 0, f"README line failed: {line}\n{done.stderr}"
        outputs.append(done)
    status = yaml.safe_load(outputs[1].stdout)  # JSON is YAML
    assert len(status["nodes"]) == 9 and all(n["state"] == "Running" for n in status["nodes"])
    assert "nothing to do" in outputs[2].stderr
    listed = bash("stackfleet list -o json --profile simulator", REPO, env)
    assert yaml.safe_load(listed.stdout) == []  # down left nothing behind


def test_ci_block_runs_each_script_line(ws: Workspace, env: dict[str, str]) -> None:
    pipeline = yaml.safe_load(block("yaml", ".gitlab-ci.yml"))
    spec = yaml.safe_load((REPO / "examples" / "quickstart.yaml").read_text())
    spec.update(name="ci", roles={"etcd": {"count": 1}, "control": {"count": 1},
                                  "workers": {"count": 1}})  # fmt: skip
    (ws.root / "cluster.yaml").write_text(yaml.safe_dump(spec))
    spec["roles"]["workers"]["count"] = 2  # "scale: 1 -> 2 workers", as the block says
    (ws.root / "cluster-more-workers.yaml").write_text(yaml.safe_dump(spec))
    for job in ("cluster-up", "test", "cluster-down"):
        script = pipeline[job]["script"]
        for line in [script] if isinstance(script, str) else script:
            done = bash(line, ws.root, env)
            assert done.returncode == 0, f"{job}: {line}\n{done.stderr}"
            if "-o json" in line:
                yaml.safe_load(done.stdout)  # one JSON document on stdout
    assert "client-certificate-data" in (ws.root / "kubeconfig").read_text()
    assert ws.run("status", "--cluster", "ci", "--profile", "simulator").exit_code == 0


def test_completion_block_installs_a_completion_in_bash(ws: Workspace, env: dict[str, str]) -> None:
    lines = block("sh", "_STACKFLEET_COMPLETE").splitlines()
    install = lines[0].split("#")[0].strip()
    done = bash(f"{install}\ncomplete -p stackfleet", ws.root, env)
    assert done.returncode == 0 and "stackfleet" in done.stdout, done.stderr


def test_spec_reference_validates_once_its_placeholder_is_filled(ws: Workspace) -> None:
    text = block("yaml", "name: demo")
    placeholders = re.findall(r"<[^>]+>", text)
    assert placeholders == ["<sha256sum of the file: 64 hex characters>"]
    path = ws.root / "reference.yaml"
    path.write_text(text.replace(placeholders[0], "ab" * 32))
    done = ws.run("validate", "-f", str(path))
    assert done.exit_code == 0, done.stderr


def test_ini_block_is_read_as_the_table_says(tmp_path: Path) -> None:
    from stackfleet.provisioners.cloudstack.credentials import cs_config

    ini = tmp_path / "cloudstack.ini"
    ini.write_text(block("ini", "[cloudstack]"))
    conf = cs_config(None, {"CLOUDSTACK_CONFIG": str(ini)}, tmp_path)
    assert conf.values["endpoint"] == "https://cloud.example.com/client/api"
    assert conf.values["timeout"] in ("30", 30) and conf.values["method"] == "post"
    assert conf.values["verify"] == "/etc/ssl/my-cloud-ca.pem"


def test_layout_block_names_folders_that_exist() -> None:
    body = block("", "cloudconfig_templates/")
    for line in body.splitlines():
        if line.startswith(" "):
            continue  # the line above's description, continued
        words = line.split()
        # "path  what it holds", or a line of paths only ("tests/ examples/ ...").
        paths = [w for w in words if w.endswith("/")] if words[-1].endswith("/") else words[:1]
        for word in paths:
            assert (REPO / word.rstrip("/")).is_dir(), f"README layout: no folder {word}"


def _synopses() -> list[list[str]]:
    out = []
    for span in sorted(set(re.findall(r"`(stackfleet [^`]*)`", README))):
        span = span.replace("\\|", "|").split(">")[0]
        out.append(shlex.split(span)[1:])
    return out


def _accepted(command: click.Command) -> set[str]:
    help_options = {"--help", "-h"}  # click adds these itself, outside `params`
    return help_options | {o for p in command.params for o in p.opts + p.secondary_opts}


def _takes_value(command: click.Command, option: str) -> bool:
    return any(option in p.opts and not getattr(p, "is_flag", True) for p in command.params)


@pytest.mark.parametrize("words", _synopses(), ids=lambda w: " ".join(w)[:60])
def test_every_command_the_readme_names_takes_the_options_it_shows(words: list[str]) -> None:
    """`stackfleet down (-f SPEC | --cluster N ...)`: the command exists and every option
    shown is one it accepts (click's own parameters decide). `push|pull` names two."""
    rest = list(words)
    while rest and rest[0].startswith("-"):  # global options before the command
        option = rest.pop(0)
        assert option in _accepted(cli), f"README: stackfleet takes no global {option}"
        if _takes_value(cli, option):
            rest.pop(0)
    commands: list[tuple[str, click.Command]] = [("", cli)]
    while rest and re.fullmatch(r"[a-z]+(\|[a-z]+)*", rest[0]):
        alternatives = rest.pop(0).split("|")
        found = []
        for path, command in commands:
            assert isinstance(command, click.Group), (
                f"README: `stackfleet{path}` has no subcommands"
            )
            for name in alternatives:
                sub = command.get_command(click.Context(command), name)
                assert sub is not None, f"README names `stackfleet{path} {name}`: no such command"
                found.append((f"{path} {name}", sub))
        commands = found
    shown = {m.group(0) for w in rest for m in re.finditer(r"(?<![\w-])--?[A-Za-z][\w-]*", w)}
    for path, command in commands:
        unknown = sorted(shown - _accepted(command))
        assert not unknown, f"README: `stackfleet{path}` takes no {', '.join(unknown)}"


def test_every_block_is_checked() -> None:
    """Runs last (file order): a block none of the tests above recognised fails here."""
    for marker_lang, marker in (
        ("sh", "pip install"),
        ("sh", "bash .ci/run"),
        ("sh", "stackfleet status -f examples/quickstart.yaml"),
        ("sh", "_STACKFLEET_COMPLETE"),
        ("yaml", "name: demo"),
        ("yaml", ".gitlab-ci.yml"),
        ("ini", "[cloudstack]"),
        ("", "cloudconfig_templates/"),
    ):
        block(marker_lang, marker)  # `bash .ci/run` is CI itself: recognised, not run
    unchecked = [BLOCKS[i][1].splitlines()[0] for i in range(len(BLOCKS)) if i not in CHECKED]
    assert not unchecked, f"README blocks no test checks (first lines): {unchecked}"
