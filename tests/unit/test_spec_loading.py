"""Loading a spec is bounded (size, depth, no aliases), CIDRs are networks, and
cloud.userdata_limit is read. Pure Python: spec loading and validation, real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sf_testkit import Workspace

from stackfleet.errors import BadInput, SpecError
from stackfleet.spec import MAX_SPEC_BYTES, MAX_SPEC_DEPTH, load_spec, parse_spec

GOOD = (
    "name: demo\n"
    "cloud: {profile: simulator, zone: sim-zrh-1}\n"
    "roles: {etcd: {count: 1}, control: {count: 1}, workers: {count: 1}}\n"
)


def _write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "spec.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _nested(levels: int) -> str:
    """A spec whose `network` value makes the document `levels` deep in all."""
    return GOOD + "network: " + "[" * (levels - 1) + "]" * (levels - 1) + "\n"


def test_nesting_up_to_the_limit_is_left_to_the_schema(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        load_spec(_write(tmp_path, _nested(MAX_SPEC_DEPTH)))
    assert "network: must be a mapping" in str(err.value)


def test_one_level_past_the_limit_is_refused_naming_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, _nested(MAX_SPEC_DEPTH + 1))
    with pytest.raises(BadInput) as err:
        load_spec(path)
    assert str(err.value) == (
        f"{path}, line 4: nested more than {MAX_SPEC_DEPTH} levels deep, the most a spec allows"
    )


def test_a_spec_of_exactly_the_size_limit_loads(tmp_path: Path) -> None:
    padding = "#" * (MAX_SPEC_BYTES - len(GOOD) - 1) + "\n"
    path = _write(tmp_path, GOOD + padding)
    assert path.stat().st_size == MAX_SPEC_BYTES
    assert load_spec(path).name == "demo"


def test_one_byte_over_the_size_limit_is_refused_before_parsing(tmp_path: Path) -> None:
    # Not YAML at all past the first line: only a size check can give this message.
    path = _write(tmp_path, GOOD + "[" * (MAX_SPEC_BYTES - len(GOOD) + 1))
    with pytest.raises(BadInput) as err:
        load_spec(path)
    assert str(err.value).startswith(f"{path}: larger than 1 MiB")


def test_alias_is_refused_naming_the_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD + "access:\n  ssh_cidrs: &o [203.0.113.0/24]\n  api_cidrs: *o\n")
    with pytest.raises(BadInput) as err:
        load_spec(path)
    assert str(err.value).startswith(f"{path}, line 5: YAML anchors (&name) and aliases")


def test_latin1_text_is_refused_naming_the_byte_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, (GOOD + "# Zürich\n").encode("latin-1"))
    with pytest.raises(BadInput) as err:
        load_spec(path)
    assert str(err.value).startswith(f"{path}: not UTF-8 text (byte {len(GOOD) + 3}, line 4)")


def test_utf8_text_outside_ascii_is_fine(tmp_path: Path) -> None:
    assert load_spec(_write(tmp_path, GOOD + "# Zürich\n")).name == "demo"


CIDR_FIELDS = [
    ("network", "pod_cidr", "10.244.1.1/16", "10.244.0.0/16", "network.pod_cidr"),
    ("network", "service_cidr", "10.96.7.0/12", "10.96.0.0/12", "network.service_cidr"),
    ("access", "ssh_cidrs", ["198.51.100.7/24"], "198.51.100.0/24", "access.ssh_cidrs[0]"),
    ("access", "api_cidrs", ["2001:db8::1/64"], "2001:db8::/64", "access.api_cidrs[0]"),
    ("access", "nodeport_cidrs", ["192.0.2.9/31"], "192.0.2.8/31", "access.nodeport_cidrs[0]"),
]


@pytest.mark.parametrize(("section", "key", "value", "network", "where"), CIDR_FIELDS)
def test_cidr_with_host_bits_suggests_its_network(
    section: str, key: str, value: str | list[str], network: str, where: str
) -> None:
    import yaml

    data = yaml.safe_load(GOOD)
    data[section] = {key: value}
    given = value if isinstance(value, str) else value[0]
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    assert err.value.problems == [(where, f"{given!r} has host bits set: did you mean {network}?")]
    # The suggestion is accepted as it stands.
    data[section] = {key: network if isinstance(value, str) else [network]}
    parse_spec(data)


def test_userdata_limit_defaults_to_cloudstacks_and_can_be_set() -> None:
    import yaml

    data = yaml.safe_load(GOOD)
    assert parse_spec(data).userdata_limit == 32768  # vm.userdata.max.length's default
    data["cloud"]["userdata_limit"] = 16000
    assert parse_spec(data).userdata_limit == 16000
    data["cloud"]["userdata_limit"] = "16k"
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    assert err.value.problems == [("cloud.userdata_limit", "must be a whole number, not '16k'")]


def test_schema_documents_userdata_limit(ws: Workspace) -> None:
    result = ws.run("schema")
    cloud = json.loads(result.stdout)["properties"]["cloud"]["properties"]
    assert cloud["userdata_limit"]["default"] == 32768
    assert "vm.userdata.max.length" in cloud["userdata_limit"]["description"]
