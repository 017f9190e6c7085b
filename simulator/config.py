"""The simulator's settings, and the parsers for the CLI's `--latency` and `--faults` strings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from stackfleet.errors import BadInput

DEFAULT_LATENCY: dict[str, float] = {"default": 0.0}
FAULT_KINDS = ("http5xx", "drop", "jobfail", "slow", "lost")


@dataclass(frozen=True)
class FaultConfig:
    """Probabilities (0..1) of each fault; `commands` restricts them (empty = every command)."""

    http5xx: float = 0.0
    drop: float = 0.0
    jobfail: float = 0.0
    slow: float = 0.0
    # A mutating command takes effect, then its answer is lost (the connection reset, or
    # a 504 from a proxy that gave up waiting): the client cannot tell it happened.
    lost: float = 0.0
    seed: int = 0
    commands: frozenset[str] = frozenset()

    def applies_to(self, command: str) -> bool:
        return not self.commands or command in self.commands


@dataclass
class SimulatorConfig:
    state_path: Path | None = None
    latency: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LATENCY))
    rtt: float = 0.0
    rate_limit: float | None = None
    faults: FaultConfig | None = None
    vm_limit: int = 20
    hosts: int = 4
    api_key: str | None = None
    secret: str | None = None
    request_log: Path | None = None
    host: str = "127.0.0.1"
    port: int = 0
    metadata_port: int | None = None
    # Where the metadata (and password) servers listen; a QEMU guest reaches them at its
    # gateway, so they can be bound to any address.
    metadata_host: str = "127.0.0.1"
    password_port: int | None = None
    userdata_max_length: int = 32768
    # Who runs the VMs: "simulator" (nothing runs; the default) or "qemu" (real guests).
    # None keeps what the state file already uses.
    hypervisor: str | None = None
    # The folder the QEMU mini-cloud's router serves as an artifact mirror (port 8090).
    mirror: Path | None = None
    # `serve` removes its guests on exit; the embedded simulator leaves them for the next
    # invocation (`down` removes them, and the mini-cloud with the last one).
    remove_guests_on_exit: bool = True

    def latency_for(self, command: str) -> float:
        return self.latency.get(command, self.latency.get("default", 0.0))


def parse_latency(text: str) -> dict[str, float]:
    """`deployVirtualMachine=20,default=1` -> dict; a bare number sets the default."""
    result = dict(DEFAULT_LATENCY)
    for item in _items(text):
        if "=" not in item:
            result["default"] = _seconds(item, "default")
            continue
        name, _, value = item.partition("=")
        result[name.strip()] = _seconds(value, name.strip())
    return result


def parse_faults(text: str, commands: str | None = None) -> FaultConfig:
    """`http5xx=0.05,drop=0.02,jobfail=0.05,slow=0.1,lost=0.05,seed=42` -> FaultConfig."""
    values: dict[str, float] = {}
    seed = 0
    for item in _items(text):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep:
            raise BadInput(f"fault {item!r}: expected name=value")
        if name == "seed":
            try:
                seed = int(value)
            except ValueError:
                raise BadInput(f"fault seed {value!r}: not an integer") from None
            continue
        if name not in FAULT_KINDS:
            raise BadInput(
                f"unknown fault {name!r}: expected one of {', '.join(FAULT_KINDS)}, seed"
            )
        try:
            prob = float(value)
        except ValueError:
            raise BadInput(f"fault {name}={value!r}: not a number") from None
        if not 0.0 <= prob <= 1.0:
            raise BadInput(f"fault {name}={value}: a probability must be between 0 and 1")
        values[name] = prob
    only = frozenset(c.strip() for c in (commands or "").split(",") if c.strip())
    return FaultConfig(seed=seed, commands=only, **values)


def _items(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _seconds(value: str, name: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise BadInput(f"latency {name}={value!r}: not a number of seconds") from None
    if seconds < 0:
        raise BadInput(f"latency {name}={value}: must not be negative")
    return seconds
