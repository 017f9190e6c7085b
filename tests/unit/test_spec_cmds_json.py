"""init, validate, schema and render with `-o json` print the shapes docs/output.md
gives; `init` writes the yaml-language-server modeline and the schema it points at.

Real: the CLI in-process (click's runner, the real error edge), spec validation with the
jsonschema library, rendering and the document validators (cloud-init schema,
systemd-analyze). Nothing touches a cloud.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator
from sf_output_doc import documented, shape
from sf_testkit import Workspace

# How yaml-language-server finds the schema: a `# yaml-language-server: $schema=...`
# comment; a relative path is resolved against the YAML file's folder.
MODELINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)$")


def _init(ws: Workspace, *args: str) -> Path:
    path = ws.root / "cluster.yaml"
    result = ws.run("init", "-f", str(path), *args)
    assert result.exit_code == 0, result.stderr
    return path


def test_init_writes_a_modeline_to_the_schema_it_writes_beside(ws: Workspace) -> None:
    path = _init(ws, "--name", "fresh")
    first = path.read_text().splitlines()[0]
    match = MODELINE.match(first)
    assert match, first
    schema_path = (path.parent / match.group(1)).resolve()
    # The file the modeline names is `stackfleet schema`'s output, byte for byte.
    assert schema_path.read_text() == ws.run("schema").stdout
    schema = json.loads(schema_path.read_text())
    # The spec passes that schema as an editor would check it, and stackfleet's validate.
    Draft202012Validator(schema).validate(yaml.safe_load(path.read_text()))
    assert ws.run("validate", "-f", str(path)).exit_code == 0
    # And the schema file catches what the CLI refuses (same schema, same verdict).
    broken = yaml.safe_load(path.read_text())
    broken["ttl"] = "2 weeks"
    assert not Draft202012Validator(schema).is_valid(broken)


def test_init_refreshes_its_schema_but_keeps_a_stranger_file(ws: Workspace) -> None:
    stale = {"$id": json.loads(ws.run("schema").stdout)["$id"], "old": True}
    (ws.root / "stackfleet.schema.json").write_text(json.dumps(stale))
    path = _init(ws)
    assert "old" not in json.loads((ws.root / "stackfleet.schema.json").read_text())

    other = ws.root / "other"
    other.mkdir()
    (other / "stackfleet.schema.json").write_text('{"title": "someone else\'s"}')
    result = ws.run("init", "-f", str(other / "s.yaml"))
    assert result.exit_code == 2
    assert "is not stackfleet's schema" in result.stderr and "--force" in result.stderr
    assert not (other / "s.yaml").exists()
    assert ws.run("init", "-f", str(other / "s.yaml"), "--force").exit_code == 0
    assert path.exists()


def test_init_into_a_missing_folder_is_one_line(ws: Workspace) -> None:
    result = ws.run("init", "-f", str(ws.root / "no" / "such" / "s.yaml"))
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().endswith("s.yaml: cannot write it (No such file or directory)")


def test_init_json(ws: Workspace) -> None:
    path = ws.root / "cluster.yaml"
    result = ws.run("init", "-f", str(path), "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json() == {
        "spec": str(path),
        "schema": str(ws.root / "stackfleet.schema.json"),
        "schema_id": "https://stackfleet.dev/schema/spec-v1.json",
    }


def test_schema_is_the_same_json_whatever_the_output(ws: Workspace) -> None:
    table, as_json = ws.run("schema"), ws.run("schema", "-o", "json")
    assert table.stdout == as_json.stdout and as_json.json()["$id"].startswith("https://")


def test_validate_json_ok(ws: Workspace) -> None:
    path = ws.spec("vj")
    result = ws.run("validate", "-f", str(path), "-o", "json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert (data["spec"], data["ok"], data["problems"]) == (str(path), True, [])
    assert [n["node"] for n in data["nodes"]] == [
        "vj-etcd-1", "vj-etcd-2", "vj-etcd-3", "vj-control-1", "vj-worker-1", "vj-worker-2",
    ]  # fmt: skip
    assert all(0 < n["base64"] <= n["limit"] == 32768 for n in data["nodes"])


def test_validate_json_lists_each_spec_problem_and_still_fails(ws: Workspace) -> None:
    path = ws.spec("vj", ttl="1x", roles={"etcd": {"count": 2}})
    result = ws.run("validate", "-f", str(path), "-o", "json")
    assert result.exit_code == 2
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")]
    data = result.json()
    assert data["ok"] is False and data["nodes"] == []
    problems = sorted(data["problems"], key=lambda p: p["where"])
    assert [(p["kind"], p["where"], p["message"]) for p in problems] == [
        (
            "spec",
            "roles.etcd.count",
            "2 is even: an even member count tolerates no more failures than one fewer; use 1 or 3",
        ),
        ("spec", "ttl", "'1x' is not a duration: use e.g. 90m, 1h30m, 2d"),
    ]


def test_validate_json_on_a_file_that_is_no_spec(ws: Workspace) -> None:
    path = ws.root / "broken.yaml"
    path.write_text("name: [unclosed\n")
    result = ws.run("validate", "-f", str(path), "-o", "json")
    assert result.exit_code == 2
    ((problem,),) = [result.json()["problems"]]
    assert problem["kind"] == "file" and problem["where"] == str(path)
    assert "not valid YAML" in problem["message"]


def test_validate_json_names_the_node_whose_document_is_too_big(ws: Workspace) -> None:
    path = ws.spec("vj", cloud={"userdata_limit": 9500})
    result = ws.run("validate", "-f", str(path), "-o", "json")
    assert result.exit_code == 2
    data = result.json()
    over = {n["node"] for n in data["nodes"] if n["base64"] > 9500}
    assert over and {p["where"] for p in data["problems"]} == over
    assert all(p["kind"] == "document" and "over cloud.userdata_limit" in p["message"]
               for p in data["problems"])  # fmt: skip


def test_render_json(ws: Workspace) -> None:
    path = ws.spec("rj")
    rows = ws.run("render", "-f", str(path), "-o", "json").json()
    assert sorted(rows[0]) == ["base64", "bytes", "file", "limit", "node", "role"]
    assert all(r["file"] is None for r in rows)

    out = ws.root / "docs"
    written = ws.run("render", "-f", str(path), "--out", str(out), "-o", "json").json()
    assert [r["file"] for r in written] == [str(out / f"{r['node']}.yaml") for r in rows]
    assert all(Path(r["file"]).stat().st_mode & 0o777 == 0o600 for r in written)

    one = ws.run("render", "-f", str(path), "--node", "rj-etcd-1", "-o", "json").json()
    plain = ws.run("render", "-f", str(path), "--node", "rj-etcd-1").stdout
    assert (one["node"], one["role"]) == ("rj-etcd-1", "etcd")
    # Each render makes a fresh throw-away PKI: compare the shape, not the keys.
    assert one["document"].splitlines()[0] == plain.splitlines()[0]
    assert one["bytes"] == len(one["document"].encode())


def test_output_doc_shows_the_shapes_these_commands_print(ws: Workspace) -> None:
    path = ws.root / "stackfleet.yaml"
    init = ws.run("init", "-f", str(path), "-o", "json").json()
    assert shape(documented("`init`")) == shape(init)
    assert documented("`init`")["schema_id"] == init["schema_id"]

    ok = ws.run("validate", "-f", str(path), "-o", "json").json()
    bad = ws.run("validate", "-f", str(ws.spec("vj", ttl="1x")), "-o", "json").json()
    doc = documented("`validate`")
    assert shape(doc)["nodes"] == shape(ok)["nodes"]
    assert shape(doc)["problems"] == shape(bad)["problems"]
    assert sorted(doc) == sorted(ok) == sorted(bad)

    assert shape(documented("`render`")) == shape(
        ws.run("render", "-f", str(path), "-o", "json").json()[:1]
    )
    schema = documented("`schema`")
    assert {k: schema[k] for k in ("$schema", "$id")} == {
        k: ws.run("schema").json()[k] for k in ("$schema", "$id")
    }
