"""Credentials are found where the CloudStack tools look, and never shown. Pure Python.

The lookup itself is compared with cs's in test_credentials_cs.py; here: our messages,
the deliberate difference (cloud.profile beats CLOUDSTACK_REGION), and the settings we
refuse rather than ignore."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackfleet.errors import CredentialsError
from stackfleet.provisioners.cloudstack.credentials import find_credentials


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No real ~/.cloudstack.ini or ./cloudstack.ini: cs (and we) would merge them."""
    (tmp_path / "home").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path / "cwd")


INI = """\
[cloudstack]
endpoint = https://default.example/client/api
key = k0
secret = s0

[lab]
endpoint = http://lab.example:8080/client/api
key = k1
secret = s1
"""


def test_environment_wins(tmp_path: Path) -> None:
    env = {
        "CLOUDSTACK_ENDPOINT": "https://env.example/client/api",
        "CLOUDSTACK_KEY": "ek",
        "CLOUDSTACK_SECRET": "es",
        "CLOUDSTACK_CONFIG": str(tmp_path / "x.ini"),
    }
    creds = find_credentials(env=env)
    assert (creds.endpoint, creds.key, creds.secret, creds.source) == (
        "https://env.example/client/api",
        "ek",
        "es",
        "the environment (CLOUDSTACK_KEY, CLOUDSTACK_SECRET)",
    )


def test_partial_environment_names_what_is_missing() -> None:
    env = {"CLOUDSTACK_ENDPOINT": "http://e/client/api", "CLOUDSTACK_KEY": "k"}
    with pytest.raises(CredentialsError, match="CLOUDSTACK_SECRET not set"):
        find_credentials(env=env)


def test_lone_endpoint_is_merged_only_with_overrides(tmp_path: Path) -> None:
    ini = tmp_path / "cloudstack.ini"
    ini.write_text(INI)
    env = {"CLOUDSTACK_ENDPOINT": "http://e/client/api", "CLOUDSTACK_CONFIG": str(ini)}
    with pytest.raises(CredentialsError, match="CLOUDSTACK_OVERRIDES=endpoint"):
        find_credentials(env=env)
    creds = find_credentials(env={**env, "CLOUDSTACK_OVERRIDES": "endpoint"})
    assert (creds.endpoint, creds.key) == ("http://e/client/api", "k0")


def test_ini_section_from_region_then_profile_then_default(tmp_path: Path) -> None:
    ini = tmp_path / "cloudstack.ini"
    ini.write_text(INI)
    base = {"CLOUDSTACK_CONFIG": str(ini)}
    assert find_credentials(env=base).key == "k0"
    assert find_credentials(profile="lab", env=base).key == "k1"
    assert find_credentials(env={**base, "CLOUDSTACK_REGION": "lab"}).key == "k1"
    # The deliberate difference from the cs CLI's default: an explicit profile wins.
    assert (
        find_credentials(profile="cloudstack", env={**base, "CLOUDSTACK_REGION": "lab"}).key == "k0"
    )
    with pytest.raises(CredentialsError, match=r"no \[nope\] section \(sections: cloudstack, lab;"):
        find_credentials(profile="nope", env=base)
    with pytest.raises(CredentialsError, match="came from CLOUDSTACK_REGION"):
        find_credentials(env={**base, "CLOUDSTACK_REGION": "nope"})


def test_spec_endpoint_overrides_the_ini(tmp_path: Path) -> None:
    ini = tmp_path / "cloudstack.ini"
    ini.write_text(INI)
    creds = find_credentials(
        profile="lab",
        endpoint_override="https://o.example/client/api",
        env={"CLOUDSTACK_CONFIG": str(ini)},
    )
    assert creds.endpoint == "https://o.example/client/api" and creds.key == "k1"


def test_nothing_found_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="profile: simulator"):
        find_credentials(env={"CLOUDSTACK_CONFIG": str(tmp_path / "absent.ini")})


def test_repr_never_shows_the_secret() -> None:
    creds = find_credentials(
        env={
            "CLOUDSTACK_ENDPOINT": "http://e/client/api",
            "CLOUDSTACK_KEY": "k",
            "CLOUDSTACK_SECRET": "TOPSECRET",
        }
    )
    assert "TOPSECRET" not in repr(creds) and "TOPSECRET" not in str(creds)


def test_no_message_shows_the_secret(tmp_path: Path) -> None:
    ini = tmp_path / "cloudstack.ini"
    ini.write_text(
        "[cloudstack]\nendpoint = http://e/client/api\nkey = k\nsecret = TOPSECRET\ntimeout = x\n"
    )
    with pytest.raises(CredentialsError) as err:
        find_credentials(env={"CLOUDSTACK_CONFIG": str(ini)})
    assert "TOPSECRET" not in str(err.value)


def test_home_and_cwd_files_are_merged(tmp_path: Path) -> None:
    (tmp_path / "home" / ".cloudstack.ini").write_text("[cloudstack]\nkey = hk\nsecret = hs\n")
    (tmp_path / "cwd" / "cloudstack.ini").write_text(
        "[cloudstack]\nendpoint = http://c/client/api\n"
    )
    creds = find_credentials(env={"HOME": str(tmp_path / "home")})
    assert (creds.endpoint, creds.key, creds.secret) == ("http://c/client/api", "hk", "hs")
    assert creds.source.endswith(".cloudstack.ini [cloudstack]")


BASE = "[cloudstack]\nendpoint = https://h/client/api\nkey = k\nsecret = s\n"


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ("verify = false\n", "dangerous_no_tls_verify = true"),
        ("verify = /no/such/ca.pem\n", "CA bundle '/no/such/ca.pem' not found"),
        ("verify = {ca}\ndangerous_no_tls_verify = true\n", "both set"),
        ("dangerous_no_tls_verify = maybe\n", "'maybe' is not true or false"),
        ("trace = true\n", "trace is not supported"),
        ("poll_interval = 5\n", "poll_interval is not supported"),
        ("job_timeout = 60\n", "cloud.timeout_s"),
        ("method = put\n", "'put' is not get or post"),
        ("timeout = soon\n", "timeout: 'soon' is not a whole number"),
        ("retry = -1\n", "must be at least 0"),
        ("cert_key = {ca}\n", "cert_key without cert"),
        ("cert = /no/client.pem\n", "client certificate '/no/client.pem' not found"),
        ("header_x-a = 50%\n", "'%' must be written '%%'"),
    ],
)
def test_settings_we_cannot_honour_are_refused(tmp_path: Path, extra: str, fragment: str) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    ini = tmp_path / "cloudstack.ini"
    ini.write_text(BASE + extra.replace("{ca}", str(ca)))
    with pytest.raises(CredentialsError) as err:
        find_credentials(env={"CLOUDSTACK_CONFIG": str(ini)})
    message = str(err.value)
    assert fragment in message and str(ini) in message and "\n" not in message


def test_settings_are_carried(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    ini = tmp_path / "cloudstack.ini"
    ini.write_text(BASE + f"verify = {ca}\ntimeout = 7\nmethod = POST\nheader_x-a = 1\n")
    creds = find_credentials(env={"CLOUDSTACK_CONFIG": str(ini), "CLOUDSTACK_RETRY": "2"})
    assert (creds.verify, creds.timeout_s, creds.method, creds.retry) == (str(ca), 7.0, "post", 2)
    assert creds.headers == (("x-a", "1"),)


def test_spec_endpoint_with_environment_key_needs_no_file(tmp_path: Path) -> None:
    env = {
        "CLOUDSTACK_KEY": "k",
        "CLOUDSTACK_SECRET": "s",
        "CLOUDSTACK_CONFIG": str(tmp_path / "x"),
    }
    creds = find_credentials("nowhere", "http://127.0.0.1:9/client/api", env=env)
    assert (creds.endpoint, creds.key, creds.secret) == ("http://127.0.0.1:9/client/api", "k", "s")
