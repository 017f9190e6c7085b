"""The engine names no cloud: a grep over its files, failing with file:line.

What counts as a cloud concept (it belongs in that provider's folder,
provisioners/<provider>/, and nowhere else):
- a provider's or its library's name: cloudstack, libcloud, exoscale (in the engine
  proper, comments included: the engine's reader should not need to know them);
- a cloud API's command or parameter names (listVirtualMachines, queryAsyncJobResult,
  securitygroupname, ...) and its job vocabulary (jobid);
- a cloud's own state words that are not the engine's MachineState (Expunging, Destroyed,
  Shutdowned), and any string literal compared with a machine's `.state`;
- a cloud's settings and units (vm.userdata.max.length, sizes in "base64 characters");
- importing a provider package, or branching on the provider's name.

What does not count: the spec's words, which are the user's vocabulary (zone, template,
offering, profile, security group, anti-affinity), generic words (tag, group, rule), the
embedded simulator (a user-facing profile), and help texts that say where credentials are
read from (cloudstack.ini): those are checked only in the engine proper, not in cli/ and
stackfleet/. provisioners/registry.py is the one engine file that names providers: it is
the table that maps `cloud.provider` to them.

Real: the repository's files. Pure text; nothing runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sf_testkit import REPO

# The engine proper: provisioners/*.py (not the providers' folders).
ENGINE = sorted(p for p in (REPO / "provisioners").glob("*.py") if p.name != "registry.py")
# The engine's users: the CLI and the namespace root (spec, state, PKI).
EDGE = sorted((REPO / "cli").glob("*.py")) + sorted((REPO / "stackfleet").glob("*.py"))
# `simulator serve --api cloudstack|exoscale` picks which simulator to serve, and its
# options name the simulated API's commands: that is the simulator's CLI, not the engine.
SIMULATOR_CLI = {REPO / "cli" / "simulator_cmd.py"}

# Anywhere in the engine proper, case-insensitive.
ENGINE_WORDS = re.compile(
    r"cloudstack|libcloud|exoscale|expung|shutdowned|(?-i:\bDestroyed\b)|vm\.userdata\.max|"
    r"base64 characters|\bjobid\b|asyncjob",
    re.IGNORECASE,
)
# In code of the engine and its users (case-sensitive API names; comments skipped).
API_NAMES = re.compile(
    r"\b(list|deploy|create|delete|destroy|update|authorize|revoke|start|stop|register|"
    r"query|expunge)(VirtualMachines?|SecurityGroups?|SecurityGroupIngress|SSHKeyPairs?|"
    r"AffinityGroups?|AsyncJobResult|AsyncJobs|Tags|Zones|Templates|ServiceOfferings|"
    r"Accounts|ResourceLimits)\b|securitygroupname|usersecuritygrouplist|"
    r"serviceofferingid|\bUserVm\b"
)
STATE_LITERAL = re.compile(
    r"""\.state\s*(==|!=|\bin\b|\bnot in\b)\s*[("'\[]|\["state"\]\s*(==|!=)\s*["']"""
)
PROVIDER_IMPORT = re.compile(
    r"provisioners\.(cloudstack|exoscale)\b|provisioners import (cloudstack|exoscale)"
)
PROVIDER_BRANCH = re.compile(
    r"""provider\s*(==|!=|\bin\b)|(==|!=)\s*["'](cloudstack|exoscale)["']"""
)
# The pure renderer's CloudStack-style measure: sizes come from the provider's rule.
RENDER_MEASURE = re.compile(r"render import .*userdata_size|render\.userdata_size")


def _lines(path: Path) -> list[tuple[int, str]]:
    return list(enumerate(path.read_text().splitlines(), start=1))


def _code(line: str) -> str:
    """The line without a trailing comment (good enough: '#' in strings is rare here)."""
    return line.split("  #", 1)[0] if not line.lstrip().startswith("#") else ""


def _where(path: Path, number: int, line: str) -> str:
    return f"{path.relative_to(REPO)}:{number}: {line.strip()}"


def findings(paths: list[Path], pattern: re.Pattern[str], code_only: bool) -> list[str]:
    found = []
    for path in paths:
        for number, line in _lines(path):
            text = _code(line) if code_only else line
            if pattern.search(text):
                found.append(_where(path, number, line))
    return found


def test_the_engine_proper_names_no_cloud() -> None:
    assert ENGINE, "no engine files found: has provisioners/ moved?"
    found = findings(ENGINE, ENGINE_WORDS, code_only=False)
    assert not found, "cloud concepts in the engine (move them to the provider):\n" + "\n".join(
        found
    )


@pytest.mark.parametrize(
    "what, pattern",
    [
        ("a cloud API's names", API_NAMES),
        ("a cloud state string compared", STATE_LITERAL),
        ("a provider package imported", PROVIDER_IMPORT),
        ("the renderer's own userdata measure", RENDER_MEASURE),
    ],
)
def test_the_engine_and_its_users_use_only_the_provider_interface(
    what: str, pattern: re.Pattern[str]
) -> None:
    paths = [p for p in ENGINE + EDGE if p not in SIMULATOR_CLI]
    found = findings(paths, pattern, code_only=True)
    assert not found, f"{what} outside the providers:\n" + "\n".join(found)


def test_nothing_branches_on_which_cloud_it_talks_to() -> None:
    paths = [p for p in ENGINE + EDGE if p not in SIMULATOR_CLI]
    found = findings(paths, PROVIDER_BRANCH, code_only=True)
    assert not found, "a branch on the provider (give the provider a method):\n" + "\n".join(found)


@pytest.mark.parametrize(
    "line, pattern",
    [
        ('    if m.state == "Running":', STATE_LITERAL),
        ("    running = [m for m in ms if m.state in ('Running',)]", STATE_LITERAL),
        ('        "running": sum(1 for n in nodes if n["state"] == "Running")', STATE_LITERAL),
        ('    if spec.provider == "exoscale":', PROVIDER_BRANCH),
        ("from stackfleet.provisioners.cloudstack.jobs import JobRunner", PROVIDER_IMPORT),
        ('    api.call("listVirtualMachines", {})', API_NAMES),
        ("    from stackfleet.cloudconfig_templates.render import userdata_size", RENDER_MEASURE),
        ("# CloudStack refuses to delete a group that a rule allows", ENGINE_WORDS),
        ('BROKEN = ("Error", "Destroyed")', ENGINE_WORDS),
    ],
)
def test_each_pattern_catches_what_it_is_for(line: str, pattern: re.Pattern[str]) -> None:
    """The grep cannot pass by matching nothing."""
    assert pattern.search(line)
    assert not pattern.search("    if m.state == MachineState.RUNNING:")
