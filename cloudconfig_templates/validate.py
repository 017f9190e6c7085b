"""Validators for rendered userdata, used by the tests and by `stackfleet validate`."""

from __future__ import annotations

import base64
import functools
import gzip
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from typing import Any

import yaml

from stackfleet.cloudconfig_templates import flatcar_schema
from stackfleet.cloudconfig_templates.document import HEADER
from stackfleet.cloudconfig_templates.model import RenderInput
from stackfleet.cloudconfig_templates.parts import ETCD_ENV, SCRIPT_DIR
from stackfleet.cloudconfig_templates.unit_check import ToolMissing, verify_units
from stackfleet.flavors import CLOUD_INIT, COREOS_CLOUDINIT, FLAVORS
from stackfleet.roles import ETCD, ETCD_PEER, ROLES

UNIT_DIR = "/etc/systemd/system/"
ETCD_SHARED = ("ETCD_INITIAL_CLUSTER", "ETCD_INITIAL_CLUSTER_TOKEN", "ETCD_INITIAL_CLUSTER_STATE")
_SHELL_SHEBANG = re.compile(r"#!\s*(?:/usr)?/bin/(?:env\s+)?(?:ba|da)?sh\b")


def file_content(entry: dict[str, Any]) -> str:
    """A write_files entry's content, decoded as the agent would."""
    content = str(entry.get("content", ""))
    encoding = entry.get("encoding", "")
    if encoding in ("gz+b64", "gzip+b64", "gz+base64", "gzip+base64"):
        return gzip.decompress(base64.b64decode(content)).decode()
    if encoding in ("b64", "base64"):
        return base64.b64decode(content).decode()
    return content


def files_of(doc: dict[str, Any]) -> dict[str, str]:
    return {str(f["path"]): file_content(f) for f in doc.get("write_files") or []}


def _coreos_units(doc: dict[str, Any]) -> dict[str, str]:
    units = (doc.get("coreos") or {}).get("units") or []
    return {u["name"]: u["content"] for u in units if isinstance(u, dict) and u.get("content")}


def _unit_files(doc: dict[str, Any]) -> dict[str, str]:
    return {p[len(UNIT_DIR) :]: c for p, c in files_of(doc).items() if p.startswith(UNIT_DIR)}


# Flavor.userdata -> where that agent's documents carry systemd units.
UNIT_READERS: dict[str, Callable[[dict[str, Any]], dict[str, str]]] = {
    COREOS_CLOUDINIT: _coreos_units,
    CLOUD_INIT: _unit_files,
}


def units_of(flavor: str, doc: dict[str, Any]) -> dict[str, str]:
    return UNIT_READERS[FLAVORS[flavor].userdata](doc)


def parse_env(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def _hyphenated(value: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            child = f"{path}.{k}" if path else str(k)
            if "-" in str(k):
                found.append(f"{child}: hyphenated key (cloud-config keys use underscores)")
            found += _hyphenated(v, child)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _hyphenated(item, f"{path}[{i}]")
    return found


def _cloud_init_schema(text: str) -> list[str]:
    tool = shutil.which("cloud-init")
    if tool is None:
        raise ToolMissing("cloud-init not found: install cloud-init to validate ubuntu userdata")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as fh:
        fh.write(text)
        fh.flush()
        proc = subprocess.run(
            [tool, "schema", "--config-file", fh.name],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    if proc.returncode == 0:
        return []
    out = (proc.stdout + proc.stderr).replace(fh.name, "userdata").strip()
    return [f"cloud-init schema: {ln}" for ln in out.splitlines() if ln.strip()]


def shell_scripts(files: dict[str, str]) -> dict[str, str]:
    """The write_files entries that are shell scripts: a sh/bash shebang, or in SCRIPT_DIR."""
    return {
        path: content
        for path, content in files.items()
        if path.startswith(f"{SCRIPT_DIR}/") or _SHELL_SHEBANG.match(content)
    }


def check_scripts(scripts: dict[str, str]) -> list[str]:
    """Debian's `shellcheck`, at its default (strictest) severity and with no exclusions, on
    each script (path -> content); empty if all are clean. Raises ToolMissing."""
    if not scripts:
        return []
    tool = shutil.which("shellcheck")
    if tool is None:
        raise ToolMissing("shellcheck not found: install shellcheck to check rendered scripts")
    return [
        p for path, content in sorted(scripts.items()) for p in _shellcheck(tool, path, content)
    ]


@functools.lru_cache(maxsize=256)
def _shellcheck(tool: str, path: str, content: str) -> tuple[str, ...]:
    # Every node of a cluster carries the same few scripts: check each distinct one once.
    with tempfile.TemporaryDirectory(prefix="stackfleet-sh-") as tmp:
        script = f"{tmp}/{path.rsplit('/', 1)[-1]}"
        with open(script, "w") as fh:
            fh.write(content)
        proc = subprocess.run(
            [tool, "--norc", "--format=gcc", script],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    out = [ln.replace(script, path) for ln in (proc.stdout + proc.stderr).splitlines() if ln]
    if proc.returncode != 0 and not out:
        out = [f"{path}: shellcheck exited {proc.returncode}"]
    return tuple(f"shellcheck: {ln}" for ln in out)


def _coreos_cloudinit_schema(doc: dict[str, Any], text: str) -> list[str]:
    return [p for p in flatcar_schema.check(doc) if "hyphenated" not in p]


def _cloud_init_schema_check(doc: dict[str, Any], text: str) -> list[str]:
    return _cloud_init_schema(text)


# Flavor.userdata -> the check of the keys that agent accepts (parsed doc, raw text).
SCHEMA_CHECKS: dict[str, Callable[[dict[str, Any], str], list[str]]] = {
    COREOS_CLOUDINIT: _coreos_cloudinit_schema,
    CLOUD_INIT: _cloud_init_schema_check,
}


def validate_document(flavor: str, node_role: str, text: str) -> list[str]:
    """Problems with one rendered document; empty if it is fine. Raises ToolMissing."""
    if flavor not in FLAVORS or node_role not in ROLES:
        return [f"unknown flavor/role {flavor!r}/{node_role!r}"]
    userdata = FLAVORS[flavor].userdata
    problems = [] if text.startswith(HEADER) else ["first line is not '#cloud-config'"]
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return [*problems, f"YAML: {exc}".splitlines()[0]]
    if not isinstance(doc, dict):
        return [*problems, "YAML: the document is not a mapping"]
    problems += _hyphenated(doc)
    problems += SCHEMA_CHECKS[userdata](doc, text)
    try:
        units = UNIT_READERS[userdata](doc)
    except (KeyError, TypeError, ValueError) as exc:
        return [*problems, f"units: cannot read ({exc})"]
    problems += verify_units(units)
    try:
        scripts = shell_scripts(files_of(doc))
    except (KeyError, TypeError, ValueError, OSError) as exc:
        return [*problems, f"write_files: cannot read ({exc})"]
    problems += check_scripts(scripts)
    return problems


def etcd_env(doc_text: str) -> dict[str, str]:
    """The etcd member's flags (ETCD_* variables) as rendered in its userdata."""
    return parse_env(files_of(yaml.safe_load(doc_text)).get(ETCD_ENV, ""))


def validate_cluster(inp: RenderInput, docs: dict[str, str]) -> list[str]:
    """Every document's problems, plus etcd flags that disagree between members."""
    problems: list[str] = []
    for node in inp.nodes:
        if node.name not in docs:
            problems.append(f"{node.name}: no document rendered")
            continue
        problems += [
            f"{node.name}: {p}" for p in validate_document(inp.flavor, node.role, docs[node.name])
        ]
    members = [n for n in inp.by_role(ETCD) if n.name in docs]
    envs = {m.name: etcd_env(docs[m.name]) for m in members}
    expected = {m.name: f"https://{m.ip}:{ETCD_PEER.number}" for m in members}
    for key in ETCD_SHARED:
        values = {name: env.get(key) for name, env in envs.items()}
        if len(set(values.values())) > 1:
            problems.append(f"etcd: {key} differs between members: {values}")
    for name, env in envs.items():
        if env.get("ETCD_NAME") != name:
            problems.append(f"{name}: ETCD_NAME is {env.get('ETCD_NAME')!r}")
        if env.get("ETCD_INITIAL_ADVERTISE_PEER_URLS") != expected[name]:
            problems.append(
                f"{name}: peer URL {env.get('ETCD_INITIAL_ADVERTISE_PEER_URLS')!r} "
                f"is not {expected[name]!r}"
            )
        listed = dict(
            item.split("=", 1)
            for item in (env.get("ETCD_INITIAL_CLUSTER") or "").split(",")
            if "=" in item
        )
        if listed != expected:
            problems.append(
                f"{name}: ETCD_INITIAL_CLUSTER {listed} does not list the members {expected}"
            )
    return problems
