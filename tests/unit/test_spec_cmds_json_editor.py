"""An editor follows `stackfleet init`'s modeline: the real yaml-language-server (the
language server behind VS Code's YAML extension, Neovim's and Helix's) opens the spec,
finds ./stackfleet.schema.json through the modeline, offline, and flags what
`stackfleet validate` refuses, in the schema's own words.

Real: yaml-language-server (npm; `npm install -g yaml-language-server`, or point
YAML_LANGUAGE_SERVER at its executable) over stdio, run offline in a network namespace of
its own (root, util-linux `unshare`); the CLI in-process for `init`. The test is skipped
where the server is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import IO, Any

import pytest
from sf_testkit import Workspace

SERVER = os.environ.get("YAML_LANGUAGE_SERVER") or shutil.which("yaml-language-server")
pytestmark = pytest.mark.skipif(
    not SERVER, reason="yaml-language-server is not installed (npm i -g yaml-language-server)"
)


def _send(stdin: IO[bytes], message: dict[str, Any]) -> None:
    body = json.dumps({"jsonrpc": "2.0", **message}).encode()
    stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    stdin.flush()


def _receive(stdout: IO[bytes]) -> dict[str, Any]:
    length = 0
    while line := stdout.readline().strip():
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    if not length:
        raise AssertionError("yaml-language-server closed its output")
    message: dict[str, Any] = json.loads(stdout.read(length))
    return message


def diagnostics(spec: Path, text: str) -> list[tuple[int, str]]:
    """(line, message) of what the server reports for `text` opened as `spec`."""
    assert SERVER
    # In a network namespace of its own (no interfaces up): the schema must come from the
    # file beside the spec, and nothing can leave this machine.
    server = subprocess.Popen(
        ["unshare", "--net", SERVER, "--stdio"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=spec.parent,
    )
    assert server.stdin and server.stdout
    try:
        uri = spec.resolve().as_uri()
        root = spec.parent.resolve().as_uri()
        start = {"processId": None, "rootUri": root, "capabilities": {}}
        _send(server.stdin, {"id": 1, "method": "initialize", "params": start})
        while _receive(server.stdout).get("id") != 1:
            pass
        _send(server.stdin, {"method": "initialized", "params": {}})
        # No schema store: the modeline is the only way to a schema (and nothing is fetched).
        settings = {"yaml": {"validate": True, "schemaStore": {"enable": False}}}
        _send(
            server.stdin,
            {"method": "workspace/didChangeConfiguration", "params": {"settings": settings}},
        )
        document = {"uri": uri, "languageId": "yaml", "version": 1, "text": text}
        _send(
            server.stdin, {"method": "textDocument/didOpen", "params": {"textDocument": document}}
        )
        while True:  # bounded by the suite's timeout if the server never answers
            message = _receive(server.stdout)
            if message.get("method") == "textDocument/publishDiagnostics":
                found = message["params"]["diagnostics"]
                return [(d["range"]["start"]["line"] + 1, d["message"]) for d in found]
            if "id" in message and "method" in message:  # the server asks: answer plainly
                result = (
                    [settings["yaml"]] if message["method"] == "workspace/configuration" else None
                )
                _send(server.stdin, {"id": message["id"], "result": result})
    finally:
        server.kill()
        server.wait()


def test_the_editor_reads_the_modeline_schema_and_flags_bad_fields(ws: Workspace) -> None:
    spec = ws.root / "stackfleet.yaml"
    assert ws.run("init", "-f", str(spec)).exit_code == 0
    text = spec.read_text()
    assert diagnostics(spec, text) == []

    broken = (
        text.replace("name: demo ", "name: Demo_1 ")
        .replace("etcd: {count: 3}", "etcd: {count: 3, cpus: 2}")
        .replace("# ttl: 1h30m", "ttl: 1x     ")
    )
    found = diagnostics(spec, broken)
    lines = broken.splitlines()
    by_field = {lines[line - 1].split(":")[0].strip(): said for line, said in found}
    assert set(by_field) == {"name", "etcd", "ttl"}, found
    # The schema's words, as `stackfleet validate` says them after the value.
    assert by_field["name"].startswith("is not a cluster name: use 2-24 lower-case letters")
    assert by_field["ttl"] == "is not a duration: use e.g. 90m, 1h30m, 2d"
    assert "cpus" in by_field["etcd"]
    spec.write_text(broken)
    refused = ws.run("validate", "-f", str(spec)).stderr
    assert "ttl: '1x' " + by_field["ttl"] in refused and "roles.etcd.cpus" in refused
