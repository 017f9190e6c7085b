"""The exoscale provider's own behaviour, beyond the contract suite (tests/contract): how it
finds credentials, names things, refuses bad input in one line, polls operations in batches
and adopts a rule made by hand.

Real: the provider on PyPI's official `exoscale` client (its signer, its generated calls), the
exoscale simulator over HTTP on loopback, validating every request and answer against the
OpenAPI spec the client ships; Python's tomllib reading `exo`-style config files; a real
`secretCommand` process. Simulated: the cloud (instances run nothing).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from exo_checks import assert_all_valid

from stackfleet.errors import CloudError, CredentialsError, LimitExceeded, NotFound
from stackfleet.provisioners import naming
from stackfleet.provisioners.base import CLUSTER_TAG, ROLE_TAG, MachineRequest
from stackfleet.provisioners.exoscale.client import ExoscaleAPI
from stackfleet.provisioners.exoscale.credentials import ExoscaleCredentials, find_credentials
from stackfleet.provisioners.exoscale.provisioner import ExoscaleProvisioner, rule_marker
from stackfleet.security_groups.rules import Rule
from stackfleet.simulator.exoscale import ExoscaleSimulator

PUBLIC_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl "
    "demo@stackfleet"
)


@pytest.fixture
def prov(sim: ExoscaleSimulator) -> Iterator[ExoscaleProvisioner]:
    creds = ExoscaleCredentials(sim.api_key, sim.secret, sim.endpoint, sim.zone, "test")
    opened = ExoscaleProvisioner(ExoscaleAPI(creds), timeout_s=60, simulated=True)
    try:
        yield opened
    finally:
        opened.close()


# --- credentials, as exoscale's tools find them ----------------------------------------


def _config(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "exoscale" / "exoscale.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return {"XDG_CONFIG_HOME": str(tmp_path), "HOME": str(tmp_path)}


TWO_ACCOUNTS = """
defaultAccount = "prod"

[[accounts]]
name = "prod"
key = "EXOprod"
secret = "prod-secret"
defaultZone = "de-fra-1"
endpoint = "https://api.exoscale.ch/compute"

[[accounts]]
name = "lab"
key = "EXOlab"
secretCommand = ["{python}", "-c", "print('lab-secret')"]
"""


def test_credentials_from_the_environment_win_over_the_exo_config(tmp_path: Path) -> None:
    env = _config(tmp_path, TWO_ACCOUNTS)
    env |= {"EXOSCALE_API_KEY": "EXOenv", "EXOSCALE_API_SECRET": "env-secret"}
    creds = find_credentials(None, env)
    assert (creds.key, creds.secret, creds.source) == ("EXOenv", "env-secret", "env")
    assert creds.endpoint_for("ch-gva-2") == "https://api-ch-gva-2.exoscale.com/v2"
    local = find_credentials(None, env | {"EXOSCALE_API_ENDPOINT": "http://127.0.0.1:9/v2"})
    assert local.endpoint_for("ch-gva-2") == "http://127.0.0.1:9/v2"
    assert "env-secret" not in repr(creds)
    with pytest.raises(CredentialsError, match="EXOSCALE_API_SECRET is not set"):
        find_credentials(None, {"EXOSCALE_API_KEY": "EXOenv"})


def test_credentials_from_the_exo_config_by_account(tmp_path: Path) -> None:
    env = _config(tmp_path, TWO_ACCOUNTS.replace("{python}", sys.executable))
    prod = find_credentials(None, env)  # defaultAccount
    assert (prod.key, prod.secret, prod.zone) == ("EXOprod", "prod-secret", "de-fra-1")
    # The v1 endpoint of an old config is not used: each zone has its v2 endpoint.
    assert prod.endpoint is None and prod.endpoint_for("de-fra-1").endswith(
        "de-fra-1.exoscale.com/v2"
    )
    lab = find_credentials("lab", env)  # the spec's cloud.profile names the account
    assert (lab.key, lab.secret) == ("EXOlab", "lab-secret")  # from secretCommand
    assert find_credentials(None, env | {"EXOSCALE_ACCOUNT": "lab"}).key == "EXOlab"
    with pytest.raises(CredentialsError) as missing:
        find_credentials("staging", env)
    assert "no account named 'staging' (cloud.profile)" in str(missing.value)
    assert "prod, lab" in str(missing.value) and "prod-secret" not in str(missing.value)


def test_credentials_problems_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError) as none:
        find_credentials(None, {"HOME": str(tmp_path)})
    assert "exoscale.toml does not exist" in str(none.value)
    assert "EXOSCALE_API_KEY" in str(none.value) and "profile: simulator" in str(none.value)
    broken = _config(tmp_path, "defaultAccount = \n")
    with pytest.raises(CredentialsError, match="not valid TOML"):
        find_credentials(None, broken)
    failing = _config(
        tmp_path, '[[accounts]]\nname = "a"\nkey = "EXOa"\nsecretCommand = ["false"]\n'
    )
    with pytest.raises(CredentialsError, match="secretCommand 'false' exited with 1"):
        find_credentials(None, failing)


def test_a_wrong_secret_is_a_credentials_error_that_never_shows_it(
    sim: ExoscaleSimulator,
) -> None:
    creds = ExoscaleCredentials(sim.api_key, "not-the-secret-x9", sim.endpoint, sim.zone, "env")
    with pytest.raises(CredentialsError) as refused:
        ExoscaleProvisioner(ExoscaleAPI(creds)).live_state("demo")
    assert "exoscale refused the credentials from env" in str(refused.value)
    assert "invalid request signature" in str(refused.value)
    assert "not-the-secret-x9" not in str(refused.value) and "\n" not in str(refused.value)


# --- lookups: the spec's zone, template and offering ------------------------------------


def test_lookups_take_the_names_a_spec_uses(prov: ExoscaleProvisioner) -> None:
    zone = prov.find_zone("CH-GVA-2")
    assert (zone.name, zone.ip_known_at_create, zone.userdata_limit) == ("ch-gva-2", True, 32768)
    with pytest.raises(NotFound, match=r"cloud\.zone: exoscale has no zone 'ch-gva-9'; e\.g\."):
        prov.find_zone("ch-gva-9")
    # stackfleet's default template names, and exoscale's own.
    flatcar = prov.find_image(zone, "Flatcar Container Linux stable")
    assert flatcar.name == "Linux Flatcar Container Linux Stable 64-bit"
    assert prov.find_image(zone, "Ubuntu 24.04 LTS").name == "Linux Ubuntu 24.04 LTS 64-bit"
    assert prov.find_image(zone, "linux ubuntu 22.04 lts 64-bit").name.endswith("22.04 LTS 64-bit")
    with pytest.raises(NotFound) as ambiguous:
        prov.find_image(zone, "ubuntu", field="roles.etcd.template")
    assert "roles.etcd.template: 'ubuntu' matches 2 exoscale templates" in str(ambiguous.value)
    # CloudStack-style offerings map onto the standard family; family.size is exoscale's own.
    assert prov.find_size(zone, "Medium").name == "standard.medium"
    large = prov.find_size(zone, "standard.large")
    assert (large.cpus, large.memory_mb) == (4, 8192)
    with pytest.raises(NotFound, match=r"no instance type 'standard\.mega'"):
        prov.find_size(zone, "standard.mega")


# --- machines ------------------------------------------------------------------------


def _request(prov: ExoscaleProvisioner, name: str, userdata: str) -> MachineRequest:
    zone = prov.find_zone("ch-gva-2")
    return MachineRequest(
        name=name,
        role="worker",
        zone_id=zone.id,
        image_id=prov.find_image(zone, "Flatcar Container Linux stable").id,
        size_id=prov.find_size(zone, "small").id,
        disk_gb=None,
        group_names=(naming.group_name("demo", "worker"),),
        key_name=naming.key_name("demo"),
        userdata=userdata,
        spread_group=None,
        start=False,
        tags={CLUSTER_TAG: "demo", ROLE_TAG: "worker"},
    )


def _groundwork(prov: ExoscaleProvisioner) -> None:
    prov.import_ssh_key(naming.key_name("demo"), PUBLIC_KEY)
    prov.create_group(naming.group_name("demo", "worker"), "demo workers", {})


def test_userdata_over_the_api_limit_is_one_line_naming_the_node(
    prov: ExoscaleProvisioner, sim: ExoscaleSimulator
) -> None:
    _groundwork(prov)
    too_big = "#cloud-config\n" + "x" * 24600  # over 32768 base64 characters
    with pytest.raises(LimitExceeded) as refused:
        prov.begin_deploy(_request(prov, "demo-worker-1", too_big))
    text = str(refused.value)
    assert "demo-worker-1" in text and "at most 32768" in text and "\n" not in text
    assert prov.live_state("demo").machines == []


def test_operations_are_polled_together(
    prov: ExoscaleProvisioner, sim: ExoscaleSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four creates in flight: each polling round asks for all that are still pending at
    once (one get-operation per operation, sent together), never one operation at a time."""
    _groundwork(prov)
    prov.settle()
    rounds: list[set[str]] = []
    real = prov.ops._pending

    def spy(op_ids: set[str]) -> set[str]:
        rounds.append(set(op_ids))
        return real(op_ids)

    monkeypatch.setattr(prov.ops, "_pending", spy)
    ops = {
        n: prov.begin_deploy(_request(prov, n, "#cloud-config\n"))
        for n in (f"demo-worker-{i}" for i in range(1, 5))
    }
    prov.ops.wait(ops, 60, "4 instances")
    assert rounds and rounds[0] == set(ops.values())
    listed = prov.machines_named(list(ops))
    assert sorted(m.name for m in listed) == sorted(ops)
    assert all(m.simulated and m.private_ip == m.public_ip for m in listed)
    assert_all_valid(sim)


def test_a_rule_made_by_hand_is_adopted_once(
    prov: ExoscaleProvisioner, sim: ExoscaleSimulator, client: Any
) -> None:
    """exoscale's rules have no labels: stackfleet marks its own by description. A wanted
    rule someone added by hand is replaced by a marked one, not doubled."""
    group = prov.create_group("demo-etcd", "demo etcd", {})
    ssh = Rule("tcp", 22, 22, cidr="192.0.2.0/24")
    client.add_rule_to_security_group(
        id=group.id,
        flow_direction="ingress",
        protocol="tcp",
        start_port=22,
        end_port=22,
        network="192.0.2.0/24",
    )
    (hand_made,) = prov.live_state("demo").groups[0].rules
    assert hand_made.rule == ssh and not hand_made.managed
    prov.change_rules({}, [], [hand_made.id], {CLUSTER_TAG: "demo"})
    prov.settle()
    (adopted,) = prov.live_state("demo").groups[0].rules
    assert adopted.rule == ssh and adopted.managed
    rules = client.get_security_group(id=group.id)["rules"]
    assert [r["description"] for r in rules] == [rule_marker("demo")]
    assert_all_valid(sim)


# --- the client wrapper: retries, and what is never repeated --------------------------------


class _Flaky(BaseHTTPRequestHandler):
    """Answers each request with the next scripted (status, body), then 200 {}."""

    script: ClassVar[list[tuple[int, dict[str, Any]]]] = []
    seen: ClassVar[list[str]] = []

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append(f"{self.command} {self.path}")
        status, body = self.script.pop(0) if self.script else (200, {"instances": []})
        data = json.dumps(body).encode()
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[ExoscaleAPI]:
    server = HTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    _Flaky.script, _Flaky.seen = [], []
    url = f"http://127.0.0.1:{server.server_address[1]}/v2"
    try:
        yield ExoscaleAPI(
            ExoscaleCredentials("EXOkey", "a-secret", url, "ch-gva-2", "test"), sleep=lambda s: None
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_reads_are_retried_on_5xx_and_429(flaky: ExoscaleAPI) -> None:
    """Real: the official client and its signer over HTTP to a scripted loopback server."""
    _Flaky.script = [(503, {"message": "busy"}), (429, {"message": "slow down"})]
    assert flaky.call("list_instances") == {"instances": []}
    assert _Flaky.seen == ["GET /v2/instance"] * 3


def test_a_create_whose_answer_is_lost_is_not_sent_twice(flaky: ExoscaleAPI) -> None:
    _Flaky.script = [(502, {"message": "bad gateway"})]
    with pytest.raises(CloudError) as refused:
        flaky.call("create_security_group", name="demo-etcd")
    assert "not repeated: it may have taken effect" in str(refused.value)
    assert _Flaky.seen == ["POST /v2/security-group"]
    # With a way to look, it finds what the lost call made instead of making it again.
    _Flaky.script, _Flaky.seen = [(502, {"message": "bad gateway"})], []
    found = flaky.call(
        "create_security_group", find_existing=lambda: {"id": "found"}, name="demo-etcd"
    )
    assert found == {"id": "found"} and _Flaky.seen == ["POST /v2/security-group"]
    _Flaky.script = [(500, {"message": "boom"})] * 10
    with pytest.raises(CloudError, match="exoscale list-instances: boom"):
        flaky.call("list_instances")


def test_a_failed_batch_raises_only_once_every_call_has_ended() -> None:
    """exoscale has no batch calls, so the provider sends one call per item at once. When
    one fails, the error comes only after the others have ended: no request of a failed
    step is still running when the command reports it (one once outlived its test and was
    answered from the next test's cassette). Real: the provider's own thread pool."""
    from concurrent.futures import ThreadPoolExecutor

    prov = ExoscaleProvisioner.__new__(ExoscaleProvisioner)  # only its pool is used
    prov._pool = ThreadPoolExecutor(4)
    ended: list[int] = []
    release = threading.Event()

    def call(i: int) -> int:
        if i == 0:
            raise CloudError("exoscale list-ssh-keys: refused")
        release.wait(5)
        ended.append(i)
        return i

    threading.Timer(0.2, release.set).start()
    with pytest.raises(CloudError, match="refused"):
        prov._each(call, range(4))
    assert sorted(ended) == [1, 2, 3]
    prov._pool.shutdown()
