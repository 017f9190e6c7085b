"""Find CloudStack credentials exactly as the `cs` client's `read_config` does (cs 5.x).

`cs_config` is a faithful copy of cs's lookup (tests/unit/test_credentials_cs.py runs both
on the same files and environments):

1. CLOUDSTACK_<KEY> for every key cs knows (endpoint, key, secret, timeout, method,
   verify, cert, cert_key, retry, retry_backoff, expiration, poll_interval, job_timeout,
   trace, theme, dangerous_no_tls_verify), over cs's defaults.
2. If CLOUDSTACK_ENDPOINT is set and CLOUDSTACK_OVERRIDES is not: that is all, no file
   is read (cs does not merge a lone endpoint with an ini file's key and secret; with
   CLOUDSTACK_OVERRIDES=endpoint it does).
3. Otherwise ~/.cloudstack.ini, ./cloudstack.ini and the file CLOUDSTACK_CONFIG names are
   read as one ini (in that order, later files win key by key; `%` interpolation as in
   configparser), and the section's values win over the environment, except for the
   keys CLOUDSTACK_OVERRIDES lists.
4. The section is the explicit profile (cs's `ini_group`, our spec's `cloud.profile`),
   else CLOUDSTACK_REGION, else `cloudstack`. `header_<name>` keys become headers.

`find_credentials` then checks every value and turns it into `Credentials`: each setting
cs reads is either honoured by our connection or refused with a line naming it.
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from stackfleet.errors import CredentialsError

# cs.client: REQUIRED_CONFIG_KEYS, ALLOWED_CONFIG_KEYS and DEFAULT_CONFIG, verbatim.
REQUIRED_KEYS = ("endpoint", "method", "timeout")
ALLOWED_KEYS = (
    "key",
    "secret",
    "verify",
    "cert",
    "cert_key",
    "retry",
    "retry_backoff",
    "theme",
    "expiration",
    "poll_interval",
    "trace",
    "dangerous_no_tls_verify",
    "job_timeout",
    "header_*",
)
CS_DEFAULTS: dict[str, Any] = {
    "timeout": 10,
    "method": "get",
    "retry": 0,
    "verify": None,
    "cert": None,
    "cert_key": None,
    "name": None,
    "expiration": 600,
    "poll_interval": 2.0,
    "trace": None,
    "dangerous_no_tls_verify": False,
}
_TRUE = ("y", "yes", "t", "true", "on", "1")
_FALSE = ("n", "no", "f", "false", "off", "0")
# The one key CLOUDSTACK_<KEY> cannot mean anything for (cs reads "CLOUDSTACK_HEADER_*").
_ENV_KEYS = [k for k in REQUIRED_KEYS + ALLOWED_KEYS if k != "header_*"]


@dataclass(frozen=True)
class Credentials:
    endpoint: str
    key: str
    secret: str
    source: str  # where they were found, for messages; never the secret itself
    # TLS: True (the default CA bundle), False (dangerous_no_tls_verify), or a CA path.
    verify: bool | str = True
    cert: str | tuple[str, str] | None = None  # client certificate (and its key file)
    # None: stackfleet's own default (a setting left unset in every file and variable).
    timeout_s: float | None = None
    method: str = "get"  # "post": every call as a form POST (userdata is always POSTed)
    retry: int | None = None  # retries after a failed request (cs's `retry`)
    retry_backoff_s: float | None = None
    expiration_s: int | None = 600  # signature v3 lifetime; None: no `expires`
    headers: tuple[tuple[str, str], ...] = ()
    section: str | None = None  # the ini section read, if any
    # Where each setting came from (CLOUDSTACK_VERIFY, "<file> [section] verify"), for
    # the messages that name the setting to change.
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __repr__(self) -> str:  # keep the secret (and header values) out of any log line
        return (
            f"Credentials(endpoint={self.endpoint!r}, source={self.source!r}, "
            f"verify={self.verify!r}, method={self.method!r}, timeout_s={self.timeout_s!r}, "
            f"headers={[name for name, _ in self.headers]!r})"
        )

    __str__ = __repr__

    def origin(self, name: str, fallback: str) -> str:
        return self.origins.get(name) or fallback


@dataclass
class CsConfig:
    """What cs's read_config returns (`values`), and where each value came from."""

    values: dict[str, Any]
    origins: dict[str, str]
    files: list[Path]  # the ini files that exist, in read order (empty: environment only)
    section: str | None
    section_found: bool


def ini_candidates(env: Mapping[str, str], home: Path | None = None) -> list[Path]:
    """cs's read order: the last file wins, key by key."""
    home = _home(env) if home is None else home
    paths = [home / ".cloudstack.ini", Path.cwd() / "cloudstack.ini"]
    if env.get("CLOUDSTACK_CONFIG"):  # cs also appends "", which never exists
        paths.append(_expand(env["CLOUDSTACK_CONFIG"], home))
    return paths


def cs_config(
    ini_group: str | None = None,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
    endpoint: str | None = None,
    profile_from: str = "cloud.profile",
) -> CsConfig:
    """cs.read_config(ini_group), step for step, with our errors instead of cs's crashes.

    `endpoint` (ours: the spec's cloud.endpoint) beats every file and variable, and
    makes the ini files optional (the key and secret may then come from the environment).
    `profile_from` names where the caller's profile is given (the spec's cloud.profile,
    or a command's --profile), for the advice in errors.
    """
    env = os.environ if env is None else env
    values = dict(CS_DEFAULTS)
    origins: dict[str, str] = {}
    for key in _ENV_KEYS:
        value = env.get(f"CLOUDSTACK_{key.upper()}")
        if value:
            values[key], origins[key] = value, f"CLOUDSTACK_{key.upper()}"
    overrides = env.get("CLOUDSTACK_OVERRIDES", "").strip()
    if not overrides and "endpoint" in values:
        return CsConfig(_booleans(values), origins, [], None, False)

    paths = ini_candidates(env, home)
    files = [p for p in paths if p.exists()]
    if not files and endpoint:
        values["endpoint"], origins["endpoint"] = endpoint, "the spec's cloud.endpoint"
        return CsConfig(_booleans(values), origins, [], None, False)
    if not files:
        raise CredentialsError(
            "no CloudStack credentials: set CLOUDSTACK_ENDPOINT, CLOUDSTACK_KEY and "
            "CLOUDSTACK_SECRET, write ~/.cloudstack.ini or ./cloudstack.ini, or use "
            f"{_simulator_hint(profile_from)} (tried {', '.join(str(p) for p in paths)})"
        )
    parser, key_files = _read_ini(files)
    explicit = bool(ini_group)
    section = ini_group or env.get("CLOUDSTACK_REGION") or "cloudstack"
    found = parser.has_section(section)
    if not found and explicit:
        raise CredentialsError(_no_section(section, parser, files, profile_from))
    ini: dict[str, Any] = {}
    ini_origins: dict[str, str] = {}
    if found:
        try:
            items = parser.items(section)
        except configparser.InterpolationError as exc:
            where = key_files.get((section, exc.option)) or key_files.get(("DEFAULT", exc.option))
            raise CredentialsError(
                f"{where or _names(files)} [{section}] {exc.option}: a '%' must be written "
                "'%%' (cs reads cloudstack.ini with configparser's interpolation)"
            ) from None
        for key, value in items:
            if value and _allowed(key):
                ini[key] = value
                where = key_files.get((section, key)) or key_files.get(("DEFAULT", key))
                ini_origins[key] = f"{where} [{section}] {key}"
        ini["name"] = section
        for key in [k for k in ini if k.startswith("header_")]:
            ini.setdefault("headers", {})[key[len("header_") :]] = ini.pop(key)
            ini_origins[f"header {key[len('header_') :]}"] = ini_origins.pop(key)
    else:
        ini = {"name": None}

    override_keys = {s.lower() for s in re.split(r"\W+", overrides)}
    values = {**values, **ini, **{k: v for k, v in values.items() if k in override_keys}}
    # A key CLOUDSTACK_OVERRIDES lists takes the environment's value, or cs's default.
    ini_origins = {k: v for k, v in ini_origins.items() if k not in override_keys}
    origins = {**origins, **ini_origins, **{k: v for k, v in origins.items() if k in override_keys}}
    if endpoint:
        values["endpoint"], origins["endpoint"] = endpoint, "the spec's cloud.endpoint"
    if "endpoint" not in values:
        if not found:
            how = "CLOUDSTACK_REGION" if env.get("CLOUDSTACK_REGION") else "the default"
            raise CredentialsError(_no_section(section, parser, files, how))
        raise CredentialsError(
            f"{_names(files)} [{section}]: missing endpoint (add `endpoint = "
            "https://<cloud>/client/api`, or set CLOUDSTACK_ENDPOINT)"
        )
    return CsConfig(_booleans(values), origins, files, section if found else None, found)


def find_credentials(
    profile: str | None = None,
    endpoint_override: str | None = None,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
    profile_from: str = "cloud.profile",
) -> Credentials:
    """Credentials for `profile` (the spec's cloud.profile, or `profile_from`: it beats
    CLOUDSTACK_REGION)."""
    env = os.environ if env is None else env
    conf = cs_config(profile or None, env, home, endpoint_override, profile_from)
    values, origins = conf.values, conf.origins
    where = _names(conf.files) or "environment"
    if conf.section:
        where += f" [{conf.section}]"

    def origin(key: str) -> str:
        return origins.get(key) or f"{where} {key}"

    if endpoint_override:
        values["endpoint"] = endpoint_override
        origins["endpoint"] = "the spec's cloud.endpoint"
    missing = [k for k in ("key", "secret") if not values.get(k)]
    if missing:
        if not conf.files:
            names = ", ".join(f"CLOUDSTACK_{k.upper()}" for k in missing)
            raise CredentialsError(
                f"environment: {names} not set (cs then reads no ini file: set "
                "CLOUDSTACK_KEY and CLOUDSTACK_SECRET too, or CLOUDSTACK_OVERRIDES=endpoint "
                "to take them from cloudstack.ini)"
            )
        raise CredentialsError(
            f"{where}: missing {', '.join(missing)} (or set "
            f"{', '.join('CLOUDSTACK_' + k.upper() for k in missing)})"
        )

    for name, why in (
        ("poll_interval", "stackfleet polls its jobs together, at its own pace"),
        ("job_timeout", "the spec's cloud.timeout_s bounds every wait"),
    ):
        if name in origins:
            raise CredentialsError(f"{origins[name]}: {name} is not supported ({why}); remove it")
    trace = values.get("trace")
    if trace not in (None, False):
        if trace is True:
            raise CredentialsError(
                f"{origin('trace')}: trace is not supported (it would print signed requests); "
                "remove it and use --debug (requests logged with the key and signature dropped)"
            )
        raise CredentialsError(f"{origin('trace')}: {trace!r} is not true or false")

    no_verify = values.get("dangerous_no_tls_verify")
    if not isinstance(no_verify, bool):
        raise CredentialsError(
            f"{origin('dangerous_no_tls_verify')}: {no_verify!r} is not true or false"
        )
    verify: bool | str = not no_verify
    ca = values.get("verify")
    if ca:
        if ca.strip().lower() in _TRUE + _FALSE:
            raise CredentialsError(
                f"{origin('verify')}: {ca!r}: cs reads `verify` as the path of a CA bundle, not "
                "a yes/no; give the CA (`verify = /path/to/ca.pem`), or turn checks off with "
                "`dangerous_no_tls_verify = true`"
            )
        if no_verify:
            raise CredentialsError(
                f"{origin('verify')} and {origin('dangerous_no_tls_verify')}: both set "
                "(cs would verify with the CA and ignore dangerous_no_tls_verify); remove one"
            )
        path = _expand(ca, _home(env))
        if not path.exists():
            raise CredentialsError(
                f"{origin('verify')}: CA bundle {str(path)!r} not found (`verify` is the path "
                "of the PEM file of the CA that signed the cloud's certificate)"
            )
        verify = str(path)

    cert: str | tuple[str, str] | None = None
    if values.get("cert"):
        cert_path = _expand(values["cert"], _home(env))
        if not cert_path.is_file():
            raise CredentialsError(
                f"{origin('cert')}: client certificate {str(cert_path)!r} not found"
            )
        cert = str(cert_path)
        if values.get("cert_key"):
            key_path = _expand(values["cert_key"], _home(env))
            if not key_path.is_file():
                raise CredentialsError(
                    f"{origin('cert_key')}: client key {str(key_path)!r} not found"
                )
            cert = (str(cert_path), str(key_path))
    elif values.get("cert_key"):
        raise CredentialsError(
            f"{origin('cert_key')}: cert_key without cert (set `cert` to the client "
            "certificate's PEM file)"
        )

    method = str(values["method"]).strip().lower()
    if method not in ("get", "post"):
        raise CredentialsError(f"{origin('method')}: {values['method']!r} is not get or post")
    timeout = _number(values, "timeout", origin, int, minimum=1)
    retry = _number(values, "retry", origin, int, minimum=0)
    backoff = _number(values, "retry_backoff", origin, float, minimum=0)
    expiration = _number(values, "expiration", origin, int, minimum=None)

    return Credentials(
        endpoint=str(values["endpoint"]),
        key=str(values["key"]),
        secret=str(values["secret"]),
        source=_source(origin("key"), origin("secret")),
        verify=verify,
        cert=cert,
        timeout_s=float(timeout) if "timeout" in origins else None,
        method=method,
        retry=retry if "retry" in origins else None,
        retry_backoff_s=backoff if "retry_backoff" in origins else None,
        expiration_s=expiration if expiration is not None and expiration >= 0 else None,
        headers=tuple(sorted((str(k), str(v)) for k, v in values.get("headers", {}).items())),
        section=conf.section,
        origins=dict(origins),
    )


# --- helpers ----------------------------------------------------------------------------
def _home(env: Mapping[str, str]) -> Path:
    return Path(env["HOME"]) if env.get("HOME") else Path(os.path.expanduser("~"))


def _expand(path: str, home: Path) -> Path:
    if path == "~" or path.startswith("~/"):
        return home / path[2:]
    return Path(os.path.expanduser(path))


def _allowed(key: str) -> bool:
    return key in REQUIRED_KEYS or any(fnmatch(key, p) for p in ALLOWED_KEYS)


def _booleans(values: dict[str, Any]) -> dict[str, Any]:
    """cs's _convert_booleans: a string it cannot read stays a string (refused later)."""
    for key in ("dangerous_no_tls_verify", "trace"):
        if isinstance(values[key], str):
            low = values[key].lower()
            if low in _TRUE + _FALSE:
                values[key] = low in _TRUE
    return values


def _read_ini(
    files: Sequence[Path],
) -> tuple[configparser.ConfigParser, dict[tuple[str, str], Path]]:
    """One parser over all files, as cs's ConfigParser().read(paths); and per (section,
    key) the file that gave the value, for messages."""
    parser = configparser.ConfigParser()
    key_files: dict[tuple[str, str], Path] = {}
    for path in files:
        try:
            text = path.read_text(encoding=None)  # cs: the locale's encoding
            parser.read_string(text, source=str(path))
            # A parser where [DEFAULT] is an ordinary section: which keys this file sets.
            one = configparser.ConfigParser(interpolation=None, default_section="\0")
            one.read_string(text, source=str(path))
        except (configparser.DuplicateOptionError, configparser.DuplicateSectionError) as exc:
            twice = f"[{exc.section}] {getattr(exc, 'option', '')}".strip()
            raise CredentialsError(
                f"{path}: {twice} is set twice (line {exc.lineno}); keep one"
            ) from None
        except (configparser.Error, OSError, UnicodeDecodeError, ValueError) as exc:
            raise CredentialsError(
                f"{path}: cannot read ({type(exc).__name__}); it must be an ini file with "
                "[section] headers and `key = value` lines"
            ) from None
        for section in one.sections():
            for key in one.options(section):
                key_files[(section, key)] = path
    return parser, key_files


def _no_section(
    section: str, parser: configparser.ConfigParser, files: Sequence[Path], how: str
) -> str:
    known = ", ".join(parser.sections()) or "none"
    return (
        f"{_names(files)}: no [{section}] section (sections: {known}; the name came from "
        f"{how}); set {how} or CLOUDSTACK_REGION to one of them"
    )


def _simulator_hint(profile_from: str) -> str:
    """How to pick the embedded simulator, where the profile is given."""
    if profile_from == "cloud.profile":
        return "`profile: simulator` under the spec's cloud"
    return f"`{profile_from} simulator`"


def _names(files: Sequence[Path]) -> str:
    return " + ".join(str(p) for p in files)


def _number(
    values: Mapping[str, Any], key: str, origin: Any, kind: type, minimum: float | None
) -> Any:
    raw = values.get(key)
    if raw is None:
        return None
    try:
        number = kind(raw)
    except (TypeError, ValueError):
        unit = "whole number" if kind is int else "number"
        raise CredentialsError(f"{origin(key)}: {raw!r} is not a {unit}") from None
    if minimum is not None and number < minimum:
        raise CredentialsError(f"{origin(key)}: {raw!r} must be at least {minimum}")
    return number


def _source(key_from: str, secret_from: str) -> str:
    """'CLOUDSTACK_KEY/CLOUDSTACK_SECRET', or the file and section both came from."""
    if key_from.startswith("CLOUDSTACK_") and secret_from.startswith("CLOUDSTACK_"):
        return "the environment (CLOUDSTACK_KEY, CLOUDSTACK_SECRET)"
    key_where, secret_where = key_from.rsplit(" ", 1)[0], secret_from.rsplit(" ", 1)[0]
    return key_where if key_where == secret_where else f"{key_from} and {secret_from}"
