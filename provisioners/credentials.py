"""Find CloudStack credentials the way the ecosystem does (the `cs` client, Ansible).

Order: CLOUDSTACK_ENDPOINT/KEY/SECRET in the environment; else a section of the ini
file named by CLOUDSTACK_CONFIG, or ./cloudstack.ini, or ~/.cloudstack.ini. The
section is CLOUDSTACK_REGION, else the spec's `cloud.profile`, else `cloudstack`.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from stackfleet.errors import CredentialsError


@dataclass(frozen=True)
class Credentials:
    endpoint: str
    key: str
    secret: str
    source: str  # where they were found, for messages; never the secret itself

    def __repr__(self) -> str:  # keep the secret out of any accidental log line
        return f"Credentials(endpoint={self.endpoint!r}, source={self.source!r})"


def ini_candidates(env: Mapping[str, str]) -> list[Path]:
    if env.get("CLOUDSTACK_CONFIG"):
        return [Path(env["CLOUDSTACK_CONFIG"]).expanduser()]
    return [Path.cwd() / "cloudstack.ini", Path.home() / ".cloudstack.ini"]


def find_credentials(
    profile: str | None = None,
    endpoint_override: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Credentials:
    env = os.environ if env is None else env
    if env.get("CLOUDSTACK_KEY") or env.get("CLOUDSTACK_SECRET"):
        missing = [n for n in ("CLOUDSTACK_KEY", "CLOUDSTACK_SECRET") if not env.get(n)]
        endpoint = endpoint_override or env.get("CLOUDSTACK_ENDPOINT")
        if not endpoint:
            missing.insert(0, "CLOUDSTACK_ENDPOINT")
        if missing:
            raise CredentialsError(
                f"environment: {', '.join(missing)} not set (set all three, or none and use "
                "a cloudstack.ini)"
            )
        assert endpoint is not None
        return Credentials(endpoint, env["CLOUDSTACK_KEY"], env["CLOUDSTACK_SECRET"], "environment")

    section = env.get("CLOUDSTACK_REGION") or profile or "cloudstack"
    for path in ini_candidates(env):
        if not path.exists():
            continue
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path)
        except (configparser.Error, OSError, UnicodeDecodeError) as exc:
            raise CredentialsError(f"{path}: cannot read ({type(exc).__name__})") from None
        if not parser.has_section(section):
            known = ", ".join(parser.sections()) or "none"
            raise CredentialsError(
                f"{path}: no [{section}] section (sections: {known}); set cloud.profile or "
                "CLOUDSTACK_REGION"
            )
        values = parser[section]
        missing = [k for k in ("endpoint", "key", "secret") if not values.get(k)]
        if endpoint_override:
            missing = [k for k in missing if k != "endpoint"]
        if missing:
            raise CredentialsError(f"{path} [{section}]: missing {', '.join(missing)}")
        return Credentials(
            endpoint_override or values["endpoint"],
            values["key"],
            values["secret"],
            f"{path} [{section}]",
        )
    raise CredentialsError(
        "no CloudStack credentials: set CLOUDSTACK_ENDPOINT, CLOUDSTACK_KEY and "
        "CLOUDSTACK_SECRET, write ~/.cloudstack.ini, or use `profile: simulator`"
    )
