"""Credentials are found where the CloudStack tools look, and never shown. Pure Python."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackfleet.errors import CredentialsError
from stackfleet.provisioners.credentials import find_credentials

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
        "environment",
    )


def test_partial_environment_names_what_is_missing() -> None:
    with pytest.raises(CredentialsError, match="CLOUDSTACK_ENDPOINT, CLOUDSTACK_SECRET not set"):
        find_credentials(env={"CLOUDSTACK_KEY": "k"})


def test_ini_section_from_region_then_profile_then_default(tmp_path: Path) -> None:
    ini = tmp_path / "cloudstack.ini"
    ini.write_text(INI)
    base = {"CLOUDSTACK_CONFIG": str(ini)}
    assert find_credentials(env=base).key == "k0"
    assert find_credentials(profile="lab", env=base).key == "k1"
    assert find_credentials(profile="nope", env={**base, "CLOUDSTACK_REGION": "lab"}).key == "k1"
    with pytest.raises(
        CredentialsError, match=r"no \[nope\] section \(sections: cloudstack, lab\)"
    ):
        find_credentials(profile="nope", env=base)


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
