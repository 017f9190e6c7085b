"""Command registry and the context every handler gets.

A handler validates synchronously (raising ApiError = an immediate HTTP error, no job),
then either answers or starts a job whose effect is registered under the same name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stackfleet.simulator import api_spec, errors, jobs
from stackfleet.simulator.config import SimulatorConfig
from stackfleet.simulator.faults import Faults
from stackfleet.simulator.state import Doc, Tx

Inner = dict[str, Any]


@dataclass
class Ctx:
    tx: Tx
    command: str
    params: dict[str, str]  # names lower-cased
    method: str  # "GET" or "POST": CloudStack's userdata caps differ
    now: float
    config: SimulatorConfig
    faults: Faults

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self.params.get(name)
        return default if value is None or value == "" else value

    def need(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise errors.missing_param(self.command, name)
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.get(name)
        # Java's Boolean.valueOf: anything but "true" (any case) is false.
        return default if value is None else value.lower() == "true"

    def integer(self, name: str) -> int | None:
        value = self.get(name)
        return None if value is None else int(value)

    def id_list(self, name: str) -> list[str]:
        value = self.get(name)
        return [v.strip() for v in value.split(",") if v.strip()] if value else []

    def maps(self, name: str) -> list[dict[str, str]]:
        return api_spec.maps(self.params, name)

    def optional_doc(self, kind: str, name: str) -> Doc | None:
        """The object an optional id filter names; an id that names nothing is refused."""
        doc_id = self.get(name)
        if doc_id is None:
            return None
        doc = self.tx.get(kind, doc_id)
        if doc is None:
            raise errors.unknown_id(name, doc_id)
        return doc

    def start_job(
        self, instance_type: str | None, instance_id: str | None, params: dict[str, Any]
    ) -> str:
        fault = self.faults.on_job(self.command)
        latency = self.config.latency_for(self.command) * (10 if fault.slow else 1)
        return jobs.create(
            self.tx, self.command, instance_type, instance_id, params, latency, fault.fail, self.now
        )


# Commands that exist in 4.18 but that the account's role may not call: CloudStack answers
# them 432 (DynamicRoleBasedAPIAccessChecker's UnavailableCommandException, which ApiServer
# maps to UNSUPPORTED_ACTION_ERROR), and its listApis does not show them to the account.
ADMIN_ONLY = frozenset({"listHosts"})

Handler = Callable[[Ctx], Inner]
HANDLERS: dict[str, Handler] = {}
EFFECTS: dict[str, jobs.Effect] = {}
# What a failed job leaves behind (e.g. a deploy that failed puts its VM in Error).
ON_FAILURE: dict[str, Callable[[Tx, Doc], None]] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn

    return register


def effect(name: str) -> Callable[[jobs.Effect], jobs.Effect]:
    def register(fn: jobs.Effect) -> jobs.Effect:
        EFFECTS[name] = fn
        return fn

    return register


def on_failure(tx: Tx, job: Doc) -> None:
    hook = ON_FAILURE.get(job["cmd"])
    if hook is not None:
        hook(tx, job)


def listing(ctx: Ctx, key: str, items: list[dict[str, Any]]) -> Inner:
    """CloudStack's list answer: total `count`, one page of items; `{}` when nothing matched."""
    if not items:
        return {}
    total = len(items)
    pagesize = ctx.integer("pagesize")
    page = ctx.integer("page")
    if pagesize is not None and pagesize > 0:
        first = ((page or 1) - 1) * pagesize
        items = items[first : first + pagesize]
    elif page is not None and pagesize is None:
        raise errors.invalid('"pagesize" parameter is required when "page" is specified')
    if not items:
        return {"count": total}
    return {"count": total, key: items}


def keyword_match(ctx: Ctx, *fields: str | None) -> bool:
    keyword = ctx.get("keyword")
    if keyword is None:
        return True
    return any(f is not None and keyword.lower() in f.lower() for f in fields)


def load_all() -> None:
    """Import every command family so that its handlers register themselves."""
    from stackfleet.simulator.commands import (  # noqa: F401
        affinity,
        asyncjobs,
        catalog_cmds,
        keypairs,
        readside,
        security_groups,
        tags,
        vms,
    )
