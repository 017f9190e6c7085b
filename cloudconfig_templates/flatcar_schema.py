"""The keys and types coreos-cloudinit (Flatcar) accepts, from its config/*.go structs.

Stricter than `coreos-cloudinit -validate` on purpose: it still accepts hyphenated keys
(`reboot-strategy`), which Flatcar >= 3975.2.0 silently ignores, and the dead `etcd`,
`etcd2` and `fleet` sections, which configure nothing on a current Flatcar.
"""

from __future__ import annotations

import re
from typing import Any

STR, BOOL, STRLIST = "string", "bool", "list of strings"

FILE = {"encoding": STR, "content": STR, "owner": STR, "path": STR, "permissions": STR}
DROP_IN = {"name": STR, "content": STR}
UNIT = {
    "name": STR,
    "mask": BOOL,
    "enable": BOOL,
    "runtime": BOOL,
    "content": STR,
    "command": STR,
    "drop_ins": [DROP_IN],
}
USER = {
    "name": STR,
    "passwd": STR,
    "ssh_authorized_keys": STRLIST,
    "gecos": STR,
    "homedir": STR,
    "no_create_home": BOOL,
    "primary_group": STR,
    "groups": STRLIST,
    "no_user_group": BOOL,
    "system": BOOL,
    "no_log_init": BOOL,
    "shell": STR,
}
UPDATE = {"reboot_strategy": STR, "group": STR, "server": STR}
LOCKSMITH = {
    "endpoint": STR,
    "etcd_cafile": STR,
    "etcd_certfile": STR,
    "etcd_keyfile": STR,
    "etcd_username": STR,
    "etcd_password": STR,
    "group": STR,
    "window_start": STR,
    "window_length": STR,
}
FLANNEL = {
    k: STR
    for k in (
        "etcd_endpoints",
        "etcd_cafile",
        "etcd_certfile",
        "etcd_keyfile",
        "etcd_prefix",
        "etcd_username",
        "etcd_password",
        "ip_masq",
        "subnet_file",
        "interface",
        "public_ip",
    )
}
OEM = {k: STR for k in ("id", "name", "version_id", "home_url", "bug_report_url")}
COREOS = {"flannel": FLANNEL, "locksmith": LOCKSMITH, "oem": OEM, "update": UPDATE, "units": [UNIT]}
CLOUD_CONFIG = {
    "ssh_authorized_keys": STRLIST,
    "coreos": COREOS,
    "write_files": [FILE],
    "hostname": STR,
    "users": [USER],
    "manage_etc_hosts": STR,
}
DEAD_SECTIONS = {
    "etcd": "etcd is no longer shipped in Flatcar",
    "etcd2": "etcd2 is no longer shipped in Flatcar",
    "fleet": "fleet is no longer shipped in Flatcar",
}
VALUES = {
    "coreos.update.reboot_strategy": re.compile(r"^(etcd-lock|reboot|off)$"),
    "write_files[].encoding": re.compile(
        r"^(base64|b64|gz|gzip|gz\+base64|gzip\+base64|gz\+b64|gzip\+b64)$"
    ),
    "write_files[].permissions": re.compile(r"^0?[0-7]{3,4}$"),
    "coreos.units[].command": re.compile(
        r"^(start|stop|restart|reload|try-restart|reload-or-restart|reload-or-try-restart)$"
    ),
}


def _type_ok(kind: str, value: Any) -> bool:
    if kind == STR:
        return isinstance(value, str)
    if kind == BOOL:
        return isinstance(value, bool)
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def check(doc: Any, schema: Any = None, path: str = "") -> list[str]:
    """Problems with `doc` against coreos-cloudinit's structs; empty if it is accepted."""
    schema = CLOUD_CONFIG if schema is None else schema
    where = path or "top level"
    if not isinstance(doc, dict):
        return [f"{where}: expected a mapping, got {type(doc).__name__}"]
    problems: list[str] = []
    for key, value in doc.items():
        child = f"{path}.{key}" if path else str(key)
        if path == "coreos" and key in DEAD_SECTIONS:
            problems.append(f"{child}: dead section ({DEAD_SECTIONS[key]})")
            continue
        if key not in schema:
            hint = " (hyphenated: coreos-cloudinit ignores it)" if "-" in str(key) else ""
            problems.append(f"{child}: unknown key{hint}")
            continue
        kind = schema[key]
        if isinstance(kind, dict):
            problems += check(value, kind, child)
        elif isinstance(kind, list):
            if not isinstance(value, list):
                problems.append(f"{child}: expected a list")
                continue
            for i, item in enumerate(value):
                problems += check(item, kind[0], f"{child}[{i}]")
        elif not _type_ok(kind, value):
            problems.append(f"{child}: expected {kind}, got {type(value).__name__}")
        elif (rule := VALUES.get(re.sub(r"\[\d+\]", "[]", child))) and not rule.match(str(value)):
            problems.append(f"{child}: invalid value {value!r}")
    return problems
