"""Each validator catches a document broken on purpose (one test per validator)."""

from __future__ import annotations

import shutil
from collections.abc import Callable

import yaml

from stackfleet.cloudconfig_templates.document import dump
from stackfleet.cloudconfig_templates.model import RenderInput
from stackfleet.cloudconfig_templates.parts import SCRIPT_DIR
from stackfleet.cloudconfig_templates.render import render_cluster, render_node
from stackfleet.cloudconfig_templates.validate import (
    check_scripts,
    file_content,
    shell_scripts,
    validate_cluster,
    validate_document,
)

Build = Callable[..., RenderInput]


def _flatcar_etcd(render_input: Build) -> dict:
    return yaml.safe_load(render_node(render_input("flatcar", etcd=1, workers=0), "etcd-0"))


def test_yaml_parse_error_is_caught():
    assert any(
        p.startswith("YAML") for p in validate_document("flatcar", "etcd", "#cloud-config\na: [b\n")
    )


def test_hyphenated_key_is_caught(render_input: Build):
    doc = _flatcar_etcd(render_input)
    doc["coreos"]["update"]["reboot-strategy"] = "off"  # silently ignored by Flatcar >= 3975.2.0
    problems = validate_document("flatcar", "etcd", dump(doc))
    assert any("reboot-strategy" in p and "hyphenated" in p for p in problems)


def test_dead_sections_are_caught(render_input: Build):
    doc = _flatcar_etcd(render_input)
    doc["coreos"]["etcd2"] = {"name": "etcd-0"}
    doc["coreos"]["fleet"] = {"public_ip": "10.0.0.1"}
    problems = validate_document("flatcar", "etcd", dump(doc))
    assert any("coreos.etcd2: dead section" in p for p in problems)
    assert any("coreos.fleet: dead section" in p for p in problems)


def test_flatcar_schema_type_and_value_errors_are_caught(render_input: Build):
    doc = _flatcar_etcd(render_input)
    doc["coreos"]["units"][0]["enable"] = "yes"
    doc["write_files"][0]["encoding"] = "zip"
    problems = validate_document("flatcar", "etcd", dump(doc))
    assert any("enable: expected bool" in p for p in problems)
    assert any("encoding: invalid value" in p for p in problems)


def test_bad_unit_directive_is_caught(render_input: Build, need_tools):
    need_tools("flatcar")
    doc = _flatcar_etcd(render_input)
    unit = next(u for u in doc["coreos"]["units"] if u["name"] == "stackfleet-etcd.service")
    unit["content"] = unit["content"].replace("[Service]\n", "[Service]\nRestartSecs=5\n")
    problems = validate_document("flatcar", "etcd", dump(doc))
    assert any("Unknown key" in p and "RestartSecs" in p for p in problems)


def test_cloud_init_schema_error_is_caught(render_input: Build, need_tools):
    need_tools("ubuntu")
    text = render_node(render_input("ubuntu", etcd=1, workers=0), "etcd-0")
    doc = yaml.safe_load(text)
    doc["ssh_deletekeys"] = "sometimes"
    problems = validate_document("ubuntu", "etcd", dump(doc))
    assert any(p.startswith("cloud-init schema") and "ssh_deletekeys" in p for p in problems)


def test_mismatched_initial_cluster_is_caught(render_input: Build, need_tools):
    need_tools("flatcar")
    inp = render_input("flatcar", etcd=3, workers=0)
    docs = render_cluster(inp)
    doc = yaml.safe_load(docs["etcd-2"])
    entry = next(f for f in doc["write_files"] if f["path"] == "/etc/etcd/etcd.env")
    entry["content"] = file_content(entry).replace(
        "etcd-1=https://10.231.0.12:2380", "etcd-1=https://10.231.0.99:2380"
    )
    entry.pop("encoding", None)
    docs["etcd-2"] = dump(doc)
    problems = validate_cluster(inp, docs)
    assert any("ETCD_INITIAL_CLUSTER differs between members" in p for p in problems)
    assert any(p.startswith("etcd-2: ETCD_INITIAL_CLUSTER") for p in problems)


def test_broken_template_copy_is_caught(render_input: Build, tmp_path, monkeypatch):
    """Render from a deliberately broken copy of the unit skeleton: the unit check fails."""
    import shutil

    import jinja2

    from stackfleet.cloudconfig_templates import templates

    src = templates.environment().loader
    assert isinstance(src, jinja2.PackageLoader)
    copy = tmp_path / "templates"
    shutil.copytree(src._template_root, copy)  # type: ignore[attr-defined]
    base = copy / "units/base.service.j2"
    base.write_text(base.read_text().replace("[Install]", "[Instal]"))
    broken = jinja2.Environment(
        loader=jinja2.FileSystemLoader(copy),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    monkeypatch.setattr(templates, "environment", lambda: broken)
    text = render_node(render_input("flatcar", etcd=1, workers=0), "etcd-0")
    problems = validate_document("flatcar", "etcd", text)
    assert any("Instal" in p for p in problems)


def test_unquoted_glob_in_a_script_is_caught(render_input: Build, need_tools):
    """The original bug: tar members passed unquoted, so the shell globbed `*/etcd` against
    the working directory (`/` under systemd: `etc/etcd`). shellcheck flags it (SC2086)."""
    need_tools("flatcar")
    doc = _flatcar_etcd(render_input)
    assert validate_document("flatcar", "etcd", dump(doc)) == []  # the fixed script passes
    entry = next(f for f in doc["write_files"] if f["path"] == f"{SCRIPT_DIR}/fetch-artifacts")
    fixed = file_content(entry)
    assert '"${names[@]}"' in fixed
    entry["content"] = fixed.replace('"${names[@]}"', "$rest")  # the old `tar ... $members`
    entry.pop("encoding", None)
    problems = validate_document("flatcar", "etcd", dump(doc))
    assert any(
        p.startswith(f"shellcheck: {SCRIPT_DIR}/fetch-artifacts:") and "SC2086" in p
        for p in problems
    ), problems


def test_shell_scripts_are_found_by_shebang_or_directory():
    files = {
        "/usr/local/bin/a": "#!/bin/sh\necho $1\n",
        "/usr/local/bin/b": "#!/usr/bin/env bash\necho hi\n",
        f"{SCRIPT_DIR}/c": "echo no shebang\n",
        "/etc/hosts": "127.0.0.1 localhost\n",
        "/usr/local/bin/d.py": "#!/usr/bin/python3\nprint(1)\n",
    }
    scripts = shell_scripts(files)
    assert sorted(scripts) == sorted(["/usr/local/bin/a", "/usr/local/bin/b", f"{SCRIPT_DIR}/c"])
    if shutil.which("shellcheck"):
        problems = check_scripts(scripts)
        assert any("/usr/local/bin/a:" in p and "SC2086" in p for p in problems)
        assert any(f"{SCRIPT_DIR}/c:" in p and "SC2148" in p for p in problems)  # no shebang


def test_missing_shellcheck_is_reported_not_skipped(monkeypatch):
    import pytest

    from stackfleet.cloudconfig_templates import validate
    from stackfleet.cloudconfig_templates.unit_check import ToolMissing

    real = shutil.which
    monkeypatch.setattr(validate.shutil, "which", lambda t: None if t == "shellcheck" else real(t))
    with pytest.raises(ToolMissing, match="shellcheck not found"):
        check_scripts({f"{SCRIPT_DIR}/x": "#!/bin/sh\ntrue\n"})
    assert check_scripts({}) == []  # no script, no tool needed
