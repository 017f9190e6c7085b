"""Our credential lookup against the `cs` client's own `read_config`, on the same inputs.

Real: cs (the reference implementation, a test extra) and ours, both reading real ini
files in a temporary HOME and working directory, with real environment variables.
Each case runs cs.read_config(ini_group=profile) and our cs_config(profile) and compares
every value; where the result is usable, it also compares cs.CloudStack(**config)'s
settings (verify, cert, timeout, method, retry, expiration, headers) with our
Credentials. The spec's cloud.profile is passed as cs's ini_group, which is also how
cs lets an explicit choice beat CLOUDSTACK_REGION.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from stackfleet.errors import CredentialsError
from stackfleet.provisioners.cloudstack.credentials import cs_config, find_credentials

cs = pytest.importorskip("cs", reason="the reference: pip install 'stackfleet[test]'")

HOME_INI = """\
[cloudstack]
endpoint = https://home.example/client/api
key = home-key
secret = home-secret
timeout = 20

[lab]
endpoint = http://lab.example:8080/client/api
key = lab-key
secret = lab-secret
method = post
"""


@dataclass
class Case:
    files: dict[str, str] = field(default_factory=dict)  # "home/.cloudstack.ini": text
    env: dict[str, str] = field(default_factory=dict)  # {root} is the temp folder
    profile: str | None = None
    usable: bool = True  # find_credentials accepts it (cs may accept more: no key)


CASES: dict[str, Case] = {
    "env_only": Case(
        env={
            "CLOUDSTACK_ENDPOINT": "https://env.example/client/api",
            "CLOUDSTACK_KEY": "ek",
            "CLOUDSTACK_SECRET": "es",
        },
        files={"home/.cloudstack.ini": HOME_INI},
    ),
    "env_only_all_settings": Case(
        env={
            "CLOUDSTACK_ENDPOINT": "https://env.example/client/api",
            "CLOUDSTACK_KEY": "ek",
            "CLOUDSTACK_SECRET": "es",
            "CLOUDSTACK_TIMEOUT": "33",
            "CLOUDSTACK_METHOD": "POST",
            "CLOUDSTACK_VERIFY": "{root}/ca.pem",
            "CLOUDSTACK_RETRY": "3",
            "CLOUDSTACK_RETRY_BACKOFF": "0.25",
            "CLOUDSTACK_EXPIRATION": "-1",
            "CLOUDSTACK_CERT": "{root}/client.pem",
            "CLOUDSTACK_CERT_KEY": "{root}/client.key",
            "CLOUDSTACK_REGION": "lab",  # no effect: no file is read
        },
    ),
    "lone_endpoint_reads_no_file": Case(
        env={"CLOUDSTACK_ENDPOINT": "https://env.example/client/api"},
        files={"home/.cloudstack.ini": HOME_INI},
        usable=False,
    ),
    "overrides_endpoint_merges_ini": Case(
        env={
            "CLOUDSTACK_ENDPOINT": "https://env.example/client/api",
            "CLOUDSTACK_OVERRIDES": "endpoint",
        },
        files={"home/.cloudstack.ini": HOME_INI},
    ),
    "home_ini_default_section": Case(files={"home/.cloudstack.ini": HOME_INI}),
    "cwd_ini_only": Case(files={"cwd/cloudstack.ini": HOME_INI.replace("home", "cwd")}),
    "home_and_cwd_merged": Case(
        files={
            "home/.cloudstack.ini": "[cloudstack]\nkey = hk\nsecret = hs\ntimeout = 7\n",
            "cwd/cloudstack.ini": "[cloudstack]\nendpoint = http://cwd.example/client/api\n",
        }
    ),
    "cwd_beats_home_key_by_key": Case(
        files={
            "home/.cloudstack.ini": HOME_INI,
            "cwd/cloudstack.ini": "[cloudstack]\nkey = cwd-key\nsecret = cwd-secret\n",
        }
    ),
    "config_file_beats_cwd_and_home": Case(
        env={"CLOUDSTACK_CONFIG": "{root}/etc/cs.ini"},
        files={
            "home/.cloudstack.ini": HOME_INI,
            "cwd/cloudstack.ini": "[cloudstack]\nkey = cwd-key\nmethod = post\n",
            "etc/cs.ini": "[cloudstack]\nkey = cfg-key\ntimeout = 45\n",
        },
    ),
    "config_file_with_tilde": Case(
        env={"CLOUDSTACK_CONFIG": "~/other.ini"},
        files={"home/other.ini": HOME_INI.replace("home-key", "tilde-key")},
    ),
    "region_picks_section": Case(
        env={"CLOUDSTACK_REGION": "lab"}, files={"home/.cloudstack.ini": HOME_INI}
    ),
    "profile_beats_region": Case(
        env={"CLOUDSTACK_REGION": "cloudstack"},
        files={"home/.cloudstack.ini": HOME_INI},
        profile="lab",
    ),
    "ini_beats_env_key_env_fills_gaps": Case(
        env={"CLOUDSTACK_KEY": "env-key", "CLOUDSTACK_SECRET": "env-secret"},
        files={"cwd/cloudstack.ini": "[cloudstack]\nendpoint = http://c/client/api\nkey = ik\n"},
    ),
    "overrides_keep_env_key_over_ini": Case(
        env={"CLOUDSTACK_KEY": "env-key", "CLOUDSTACK_OVERRIDES": "key, timeout"},
        files={"home/.cloudstack.ini": HOME_INI},
    ),
    "defaults_headers_unknown_and_empty_keys": Case(
        files={
            "home/.cloudstack.ini": (
                "[DEFAULT]\nmethod = POST\nheader_x-team = blue\n\n"
                "[cloudstack]\nendpoint = https://h/client/api\nkey = k\nsecret = s\n"
                "header_x-trace = 1\nzone = ignored-by-cs\ntimeout =\ntheme = monokai\n"
            )
        }
    ),
    "tls_settings_from_ini": Case(
        files={
            "home/.cloudstack.ini": (
                "[cloudstack]\nendpoint = https://h/client/api\nkey = k\nsecret = s\n"
                "dangerous_no_tls_verify = yes\ncert = {root}/client.pem\n"
                "expiration = 120\nretry = 0\n"
            )
        }
    ),
    "verify_ca_from_ini_env_timeout_loses": Case(
        env={"CLOUDSTACK_TIMEOUT": "99"},
        files={
            "cwd/cloudstack.ini": (
                "[cloudstack]\nendpoint = https://h/client/api\nkey = k\nsecret = s\n"
                "verify = {root}/ca.pem\ntimeout = 5\n"
            )
        },
    ),
    "empty_env_values_are_unset": Case(
        env={"CLOUDSTACK_ENDPOINT": "", "CLOUDSTACK_KEY": "", "CLOUDSTACK_CONFIG": ""},
        files={"home/.cloudstack.ini": HOME_INI},
    ),
    # Cases both refuse (cs with an exception, we with one line).
    "no_file_at_all": Case(env={"CLOUDSTACK_KEY": "k"}, usable=False),
    "profile_section_missing": Case(
        files={"home/.cloudstack.ini": HOME_INI}, profile="nope", usable=False
    ),
    "region_section_missing": Case(
        env={"CLOUDSTACK_REGION": "nope"},
        files={"home/.cloudstack.ini": HOME_INI},
        usable=False,
    ),
}


def _setup(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CLOUDSTACK_"):
            monkeypatch.delenv(name)
    for sub in ("home", "cwd", "etc"):
        (tmp_path / sub).mkdir()
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("-----BEGIN CERTIFICATE-----\n")
    for rel, text in case.files.items():
        (tmp_path / rel).write_text(text.replace("{root}", str(tmp_path)))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path / "cwd")
    for name, value in case.env.items():
        monkeypatch.setenv(name, value.replace("{root}", str(tmp_path)))


def _cs_result(profile: str | None) -> dict[str, Any] | None:
    try:
        return cs.read_config(ini_group=profile)
    except (SystemExit, Exception):  # cs: SystemExit, ValueError, NoSectionError
        return None


def test_enough_combinations() -> None:
    assert len(CASES) >= 12


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_result_as_cs(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES[name]
    _setup(case, tmp_path, monkeypatch)
    theirs = _cs_result(case.profile)
    try:
        ours: dict[str, Any] | None = cs_config(case.profile).values
    except CredentialsError:
        ours = None
    assert ours == theirs
    if not case.usable:
        with pytest.raises(CredentialsError):
            find_credentials(case.profile)
        return
    assert theirs is not None
    creds = find_credentials(case.profile)
    client = cs.CloudStack(**{k: v for k, v in theirs.items() if k != "theme"})
    assert (creds.endpoint, creds.key, creds.secret) == (client.endpoint, client.key, client.secret)
    assert creds.method == client.method
    assert creds.verify == client.verify
    assert creds.cert == client.cert
    assert dict(creds.headers) == client.headers
    expiration = client.expiration.total_seconds()
    assert creds.expiration_s == (expiration if expiration >= 0 else None)
    # Left unset, timeout and retry keep stackfleet's own defaults; set, they are cs's.
    if "timeout" in creds.origins:
        assert creds.timeout_s == client.timeout
    else:
        assert creds.timeout_s is None and client.timeout == 10
    if "retry" in creds.origins:
        assert creds.retry == client.retry
    if "retry_backoff" in creds.origins:
        assert creds.retry_backoff_s == client.retry_backoff
