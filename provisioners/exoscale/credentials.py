"""Find exoscale credentials the way exoscale's own tools do.

1. EXOSCALE_API_KEY and EXOSCALE_API_SECRET (both, or neither), with EXOSCALE_API_ENDPOINT
   for another endpoint (the simulator's `simulator serve --api exoscale` prints all three).
2. Else the `exo` CLI's config file: $EXOSCALE_CONFIG, else
   $XDG_CONFIG_HOME/exoscale/exoscale.toml (~/.config/exoscale/exoscale.toml). TOML:

       defaultAccount = "prod"
       [[accounts]]
       name = "prod"
       key = "EXO..."
       secret = "..."            # or secretCommand = ["pass", "show", "exoscale"]
       defaultZone = "ch-gva-2"

   The account is the spec's `cloud.profile` (or --profile), else $EXOSCALE_ACCOUNT, else
   `defaultAccount`, else the only one. Keys are read case-insensitively, as the CLI's
   viper does. An `endpoint` ending in /v2 is used; older ones (the v1 `/compute` API, gone
   since 2024) are ignored.

The zone: the spec's `cloud.zone` decides where machines go; `defaultZone` /
$EXOSCALE_ZONE only name the endpoint to use before a zone is asked for.
"""

from __future__ import annotations

import os
import subprocess
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stackfleet.errors import CredentialsError

DEFAULT_ZONE = "ch-gva-2"
# The real API: one endpoint per zone.
ZONE_ENDPOINT = "https://api-{zone}.exoscale.com/v2"
SECRET_COMMAND_TIMEOUT_S = 60


@dataclass(frozen=True)
class ExoscaleCredentials:
    key: str
    secret: str
    # An explicit endpoint (EXOSCALE_API_ENDPOINT, the config's v2 endpoint, the simulator);
    # None: the zone's own, https://api-<zone>.exoscale.com/v2.
    endpoint: str | None
    zone: str
    source: str  # where they were found, for messages; never the secret itself

    def __repr__(self) -> str:  # the secret never reaches a log line
        return (
            f"ExoscaleCredentials(key={self.key!r}, secret=***, endpoint={self.endpoint!r}, "
            f"zone={self.zone!r}, source={self.source!r})"
        )

    def endpoint_for(self, zone: str) -> str:
        return self.endpoint or ZONE_ENDPOINT.format(zone=zone)


def config_path(env: Mapping[str, str]) -> Path:
    if env.get("EXOSCALE_CONFIG"):
        return Path(env["EXOSCALE_CONFIG"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "exoscale" / "exoscale.toml"


def find_credentials(
    profile: str | None,
    env: Mapping[str, str] | None = None,
    profile_from: str = "cloud.profile",
) -> ExoscaleCredentials:
    env = os.environ if env is None else env
    key, secret = env.get("EXOSCALE_API_KEY", ""), env.get("EXOSCALE_API_SECRET", "")
    zone = env.get("EXOSCALE_ZONE", "").strip()
    if key or secret:
        if not (key and secret):
            missing = "EXOSCALE_API_SECRET" if key else "EXOSCALE_API_KEY"
            raise CredentialsError(
                f"EXOSCALE_API_KEY and EXOSCALE_API_SECRET go together: {missing} is not set"
            )
        endpoint = env.get("EXOSCALE_API_ENDPOINT", "").strip() or None
        return ExoscaleCredentials(
            key, secret, _checked(endpoint, "EXOSCALE_API_ENDPOINT"), zone or DEFAULT_ZONE, "env"
        )
    path = config_path(env)
    account = _account(path, profile or env.get("EXOSCALE_ACCOUNT") or None, profile_from)
    name = account.get("name", "?")
    where = f"{path} [{name}]"
    key = str(account.get("key") or "")
    secret = _secret(account, where)
    if not key or not secret:
        raise CredentialsError(f"{where}: the account needs key and secret (or secretCommand)")
    endpoint = str(account.get("endpoint") or "").strip() or None
    if endpoint is not None and not endpoint.rstrip("/").endswith("/v2"):
        endpoint = None  # the v1 (CloudStack) API of older configs: answers 403 since 2024
    zone = zone or str(account.get("defaultzone") or "") or DEFAULT_ZONE
    return ExoscaleCredentials(key, secret, _checked(endpoint, where), zone, where)


def _checked(endpoint: str | None, where: str) -> str | None:
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise CredentialsError(
            f"{where}: endpoint {endpoint!r} is not an http(s) URL "
            "(e.g. https://api-ch-gva-2.exoscale.com/v2)"
        )
    return endpoint.rstrip("/") if endpoint else None


def _lower(table: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in table.items()}


def _account(path: Path, wanted: str | None, profile_from: str) -> dict[str, Any]:
    hint = (
        "set EXOSCALE_API_KEY and EXOSCALE_API_SECRET, or run `exo config`; "
        "for a cluster without an account use `profile: simulator`"
    )
    try:
        data = _lower(tomllib.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise CredentialsError(f"no exoscale credentials: {path} does not exist; {hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialsError(f"{path}: cannot read it ({exc.__class__.__name__})") from None
    except tomllib.TOMLDecodeError as exc:
        raise CredentialsError(f"{path}: not valid TOML ({exc})") from None
    accounts = [_lower(a) for a in data.get("accounts", []) if isinstance(a, dict)]
    names = [str(a.get("name", "")) for a in accounts]
    if not accounts:
        raise CredentialsError(f"{path}: no [[accounts]] in it; {hint}")
    name = wanted or data.get("defaultaccount") or (names[0] if len(names) == 1 else None)
    if name is None:
        raise CredentialsError(
            f"{path}: {len(names)} accounts and no defaultAccount; name one with "
            f"{profile_from} (e.g. {names[0]})"
        )
    for account in accounts:
        if account.get("name") == name:
            return account
    source = profile_from if wanted else "defaultAccount"
    raise CredentialsError(
        f"{path}: no account named {name!r} ({source}); it has: {', '.join(names)}"
    )


def _secret(account: Mapping[str, Any], where: str) -> str:
    command = account.get("secretcommand")
    if not command:
        return str(account.get("secret") or "")
    if not isinstance(command, list) or not all(isinstance(c, str) for c in command):
        raise CredentialsError(f'{where}: secretCommand must be a list, e.g. ["pass", "exo"]')
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=SECRET_COMMAND_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CredentialsError(f"{where}: secretCommand {command[0]!r} failed: {exc}") from None
    if done.returncode != 0:
        raise CredentialsError(
            f"{where}: secretCommand {command[0]!r} exited with {done.returncode}"
        )
    return done.stdout.rstrip("\n")
