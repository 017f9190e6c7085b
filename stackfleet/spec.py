"""The cluster spec: YAML in, a validated `Spec` out, every problem reported at once.

The JSON Schema (stackfleet/spec_schema.py) is the single description of the format:
`stackfleet schema` prints it, and the `jsonschema` library checks the spec against
exactly it. Checks a schema cannot express (an even etcd count, overlapping CIDRs)
follow in `_semantic_checks`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stackfleet import flavors
from stackfleet.artifacts import ARTIFACT_NAMES, ArtifactPin
from stackfleet.errors import BadInput, SpecError
from stackfleet.etcd_timing import SECTION as ETCD_TIMING
from stackfleet.etcd_timing import EtcdTiming, timing_problem
from stackfleet.provisioners.registry import DEFAULT_PROVIDER, userdata_rule
from stackfleet.roles import ROLES
from stackfleet.spec_schema import (
    DURATION_EXAMPLES,
    DURATION_PATTERN,
    DURATION_UNITS,
    FLAVORS,
    ROLE_KEYS,
    SCHEMA,
    STRATEGIES,
    schema_problems,
)

__all__ = ["FLAVORS", "ROLE_KEYS", "SCHEMA", "STRATEGIES", "Spec", "load_spec", "parse_spec"]

# The longest ttl: a cluster meant to stay has none.
MAX_TTL_S = 365 * 86400


@dataclass(frozen=True)
class RoleSpec:
    role: str  # machine role: a key of stackfleet.roles.ROLES
    count: int
    template: str
    offering: str
    disk_gb: int | None


@dataclass(frozen=True)
class Spec:
    name: str
    profile: str | None
    endpoint: str | None
    zone: str
    bootstrap: str
    concurrency: int
    timeout_s: int
    os: str
    roles: tuple[RoleSpec, ...]
    pod_cidr: str
    service_cidr: str
    flannel_backend: str
    ssh_cidrs: tuple[str, ...]
    api_cidrs: tuple[str, ...]
    nodeport_cidrs: tuple[str, ...]
    kubernetes_version: str
    artifacts_base_url: str | None
    ttl_seconds: int | None
    artifact_pins: tuple[ArtifactPin, ...] = ()  # artifacts.<name>, in ARTIFACT_NAMES order
    # cloud.simulator: the embedded simulator's hypervisor and the QEMU router's mirror.
    simulator_hypervisor: str | None = None
    simulator_mirror: str | None = None
    # cloud.userdata_limit: the largest userdata the cloud accepts, as the provider counts
    # it (registry.userdata_rule); its default is the provider's.
    userdata_limit: int = field(default_factory=lambda: _default_limit(DEFAULT_PROVIDER))
    # cloud.provider: which cloud API (provisioners/registry.py).
    provider: str = DEFAULT_PROVIDER
    state: str | None = None  # the state store's URL (None: STACKFLEET_STATE or local)
    etcd_timing: EtcdTiming = field(default_factory=EtcdTiming)  # etcd: heartbeat, election
    source: str = field(default="<spec>", compare=False)

    def role(self, role: str) -> RoleSpec | None:
        return next((r for r in self.roles if r.role == role), None)

    def machine_names(self) -> list[tuple[str, str]]:
        """(name, role) of every machine, etcd first: the order they are created in."""
        return [
            (f"{self.name}-{r.role}-{i}", r.role) for r in self.roles for i in range(1, r.count + 1)
        ]


def parse_duration(text: str) -> int:
    """Seconds in a duration the schema accepts: 90m, 1h30m, 2d, 3600s (parts summed)."""
    return sum(int(n) * DURATION_UNITS[unit] for n, unit in re.findall(r"([0-9]+)([a-z])", text))


# Bounds on what loading a spec may cost, checked before and while parsing: a spec is
# a short text file, so anything past these is a mistake or an attack (a "billion
# laughs" of nested aliases, a value nested thousands deep), refused in one line.
MAX_SPEC_BYTES = 1024 * 1024
MAX_SPEC_DEPTH = 32


def _spec_loader() -> Any:
    """A SafeLoader that refuses a key given twice (YAML would keep the last silently),
    aliases (`*name`: a spec never needs them, and they are how a tiny file expands to
    gigabytes), nesting deeper than MAX_SPEC_DEPTH, and integers too long to convert."""
    import yaml
    from yaml.constructor import ConstructorError
    from yaml.error import MarkedYAMLError
    from yaml.events import AliasEvent, CollectionStartEvent

    class Refused(MarkedYAMLError):
        """Valid YAML that a spec may not contain."""

    class SpecLoader(yaml.SafeLoader):
        refused = Refused
        _depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            if isinstance(event, AliasEvent) or getattr(event, "anchor", None):
                raise Refused(
                    None,
                    None,
                    "YAML anchors (&name) and aliases (*name) are not allowed in a spec: "
                    "write the value out",
                    event.start_mark,
                )
            nested = self.check_event(CollectionStartEvent)
            if nested:
                if self._depth >= MAX_SPEC_DEPTH:
                    mark = self.peek_event().start_mark
                    raise Refused(
                        None,
                        None,
                        f"nested more than {MAX_SPEC_DEPTH} levels deep, the most a spec allows",
                        mark,
                    )
                self._depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                if nested:
                    self._depth -= 1

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                try:
                    again = key in seen
                except TypeError:  # a list or mapping as a key
                    raise ConstructorError(
                        None, None, "a key must be a plain word or number", key_node.start_mark
                    ) from None
                if again:
                    raise ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

        def construct_yaml_int(self, node: Any) -> Any:
            try:
                return super().construct_yaml_int(node)
            except ValueError:  # Python's cap on digits (4300)
                raise ConstructorError(
                    None, None, "a number too long to be one", node.start_mark
                ) from None

    SpecLoader.add_constructor("tag:yaml.org,2002:int", SpecLoader.construct_yaml_int)
    return SpecLoader


def load_spec(path: Path) -> Spec:
    import yaml

    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_SPEC_BYTES + 1)  # bounded: /dev/zero is a file too
    except OSError as exc:
        raise BadInput(f"{path}: cannot read the spec ({exc.strerror or exc})") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise BadInput(
            f"{path}: larger than {MAX_SPEC_BYTES // 1024 // 1024} MiB, the most a spec may be "
            "(is this the right file?)"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise BadInput(
            f"{path}: not UTF-8 text (byte {exc.start}, line {line}); a spec is a YAML text "
            "file: save it as UTF-8"
        ) from None
    loader = _spec_loader()  # a SafeLoader subclass
    try:
        data = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", exc)
        if mark is not None and isinstance(exc, loader.refused):
            raise BadInput(f"{path}, line {mark.line + 1}: {problem}") from None
        where = f" at line {mark.line + 1}" if mark else ""
        raise BadInput(f"{path}: not valid YAML{where}: {problem}") from None
    return parse_spec(data, source=str(path))


def parse_spec(data: Any, source: str = "<spec>") -> Spec:
    problems = schema_problems(data)
    _semantic_checks(data, problems)
    if problems:
        raise SpecError(source, problems)
    return _build(data, source)


def _semantic_checks(data: Any, problems: list[tuple[str, str]]) -> None:
    """Cross-field checks; each runs only on the parts that passed the schema."""
    if not isinstance(data, dict):
        return
    roles: dict[str, Any] = data["roles"] if isinstance(data.get("roles"), dict) else {}
    counts: dict[str, int] = {
        key: item["count"]
        for key, item in roles.items()
        if isinstance(item, dict) and _is_int(item.get("count"))
    }
    members = counts.get("etcd")
    if members == 0:
        problems.append(
            (
                "roles.etcd.count",
                "0: a cluster needs at least 1 etcd member (to delete the "
                "cluster, use `stackfleet down`)",
            )
        )
    elif members is not None and members % 2 == 0:
        problems.append(
            (
                "roles.etcd.count",
                f"{members} is even: an even member count tolerates no more "
                f"failures than one fewer; use {members - 1} or {members + 1}",
            )
        )
    _etcd_timing_check(data.get(ETCD_TIMING), problems)
    if counts.get("workers", 0) and not counts.get("control", 0):
        problems.append(("roles.control.count", "workers need at least one control node"))
    if counts.get("control", 0) > 1:
        problems.append(("roles.control.count", "one control node is supported (HA: not yet)"))
    ttl = data.get("ttl")
    if isinstance(ttl, str) and re.fullmatch(DURATION_PATTERN, ttl):
        if parse_duration(ttl) == 0:
            # A zero ttl would make the cluster expired the moment it exists.
            problems.append(
                ("ttl", f"{ttl!r} is zero: give a positive duration such as {DURATION_EXAMPLES}")
            )
        elif parse_duration(ttl) > MAX_TTL_S:
            problems.append(
                ("ttl", f"{ttl!r} is longer than 365d: leave ttl out for a cluster that stays")
            )
    net: dict[str, Any] = data["network"] if isinstance(data.get("network"), dict) else {}
    pod = net.get("pod_cidr", DEFAULT_POD_CIDR)
    svc = net.get("service_cidr", DEFAULT_SERVICE_CIDR)
    if _overlap(pod, svc):
        problems.append(("network.service_cidr", f"{svc} overlaps network.pod_cidr {pod}"))
    if net.get("flannel_backend") == "host-gw":
        # host-gw sends pod addresses as packet sources; CloudStack's security-group zones
        # (the zones stackfleet builds on) drop any source but the VM's own (anti-spoofing).
        problems.append(
            (
                "network.flannel_backend",
                "host-gw cannot work in CloudStack security-group zones: they drop packets "
                "whose source is not the VM's own address (anti-spoofing), and host-gw sends "
                "pod addresses; use vxlan",
            )
        )
    _artifact_checks(data.get("artifacts"), problems)


def _etcd_timing_check(etcd: Any, problems: list[tuple[str, str]]) -> None:
    if not isinstance(etcd, dict):
        return
    default = EtcdTiming()
    heartbeat = etcd.get("heartbeat_ms", default.heartbeat_ms)
    election = etcd.get("election_timeout_ms", default.election_timeout_ms)
    if _is_int(heartbeat) and _is_int(election):
        said = timing_problem(heartbeat, election)
        if said:
            problems.append(("etcd.election_timeout_ms", said))


def _artifact_checks(arts: Any, problems: list[tuple[str, str]]) -> None:
    if not isinstance(arts, dict):
        return
    for name in ARTIFACT_NAMES:
        pin = arts.get(name)
        if not isinstance(pin, dict):
            continue
        where = f"artifacts.{name}"
        if "file" in pin and "url" in pin:
            problems.append((where, "give file or url, not both"))
        elif "file" not in pin and "url" not in pin:
            problems.append(
                (where, "needs file (a name under artifacts.base_url) or url (absolute)")
            )
        elif "file" in pin and not arts.get("base_url"):
            problems.append(
                (
                    f"{where}.file",
                    "needs artifacts.base_url to download from; set base_url, "
                    "or give an absolute url instead",
                )
            )


def _overlap(a: Any, b: Any) -> bool:
    if not (isinstance(a, str) and isinstance(b, str)) or _bad_cidr(a) or _bad_cidr(b):
        return False
    return ipaddress.ip_network(a, strict=False).overlaps(ipaddress.ip_network(b, strict=False))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


DEFAULT_POD_CIDR = "10.244.0.0/16"
DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
DEFAULT_KUBERNETES = "1.31.4"


def _build(data: dict[str, Any], source: str) -> Spec:
    cloud = data["cloud"]
    flavor = data.get("os", flavors.DEFAULT)
    default_template = flavors.flavor(flavor).default_template
    roles = []
    for key, role in ROLE_KEYS.items():
        item = data["roles"].get(key)
        if not item or not item["count"]:
            continue
        roles.append(
            RoleSpec(
                role=role,
                count=item["count"],
                template=item.get("template", default_template),
                offering=item.get("offering", ROLES[role].default_offering),
                disk_gb=item.get("disk_gb"),
            )
        )
    net = data.get("network", {})
    access = data.get("access", {})
    ttl = data.get("ttl")
    arts = data.get("artifacts", {})
    return Spec(
        name=data["name"],
        profile=cloud.get("profile"),
        simulator_hypervisor=cloud.get("simulator", {}).get("hypervisor"),
        simulator_mirror=_beside(source, cloud.get("simulator", {}).get("mirror")),
        endpoint=cloud.get("endpoint"),
        zone=cloud["zone"],
        bootstrap=cloud.get("bootstrap", "auto"),
        concurrency=cloud.get("concurrency", 8),
        timeout_s=cloud.get("timeout_s", 1800),
        provider=cloud.get("provider", DEFAULT_PROVIDER),
        userdata_limit=cloud.get(
            "userdata_limit", _default_limit(cloud.get("provider", DEFAULT_PROVIDER))
        ),
        os=flavor,
        roles=tuple(roles),
        pod_cidr=net.get("pod_cidr", DEFAULT_POD_CIDR),
        service_cidr=net.get("service_cidr", DEFAULT_SERVICE_CIDR),
        flannel_backend=net.get("flannel_backend", "vxlan"),
        ssh_cidrs=tuple(access.get("ssh_cidrs", [])),
        api_cidrs=tuple(access.get("api_cidrs", [])),
        nodeport_cidrs=tuple(access.get("nodeport_cidrs", [])),
        kubernetes_version=data.get("kubernetes", {}).get("version", DEFAULT_KUBERNETES),
        artifacts_base_url=arts.get("base_url"),
        ttl_seconds=parse_duration(ttl) if ttl else None,
        state=data.get("state"),
        etcd_timing=EtcdTiming(**data.get(ETCD_TIMING, {})),
        artifact_pins=tuple(
            ArtifactPin(
                name=name,
                version=arts[name]["version"].removeprefix("v"),
                sha256=arts[name]["sha256"].lower(),
                file=arts[name].get("file"),
                url=arts[name].get("url"),
            )
            for name in ARTIFACT_NAMES
            if name in arts
        ),
        source=source,
    )


def _beside(source: str, path: str | None) -> str | None:
    """A relative path in the spec is relative to the spec file, as a reader expects."""
    if path is None or source.startswith("<"):
        return path
    return str(Path(source).parent / Path(path).expanduser())


def _bad_cidr(text: str) -> bool:
    if "/" not in text:
        return True
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return True
    return False


def _default_limit(provider: str) -> int:
    """The userdata limit a provider's clouds have unless the spec says otherwise."""
    return userdata_rule(provider).default_limit
