"""createSSHKeyPair, registerSSHKeyPair, listSSHKeyPairs, deleteSSHKeyPair."""

from __future__ import annotations

import uuid

from stackfleet.simulator import catalog as cat
from stackfleet.simulator import errors, shapes, sshkeys
from stackfleet.simulator.commands import Ctx, Inner, command, keyword_match, listing
from stackfleet.simulator.state import Doc, Tx


def by_name(tx: Tx, name: str) -> Doc | None:
    return next((k for k in tx.all("keypair") if k["name"] == name), None)


def _check_new(ctx: Ctx, name: str) -> None:
    if by_name(ctx.tx, name) is not None:
        raise errors.invalid(f"A key pair with name '{name}' already exists.")


@command("createSSHKeyPair")
def create(ctx: Ctx) -> Inner:
    name = ctx.need("name")
    _check_new(ctx, name)
    private, public = sshkeys.generate_rsa()
    doc = {
        "id": str(uuid.uuid4()),
        "name": name,
        "publickey": public,
        "fingerprint": sshkeys.fingerprint(public),
    }
    ctx.tx.put("keypair", doc)
    return {"keypair": {**shapes.keypair(doc), "privatekey": private}}


@command("registerSSHKeyPair")
def register(ctx: Ctx) -> Inner:
    name, public = ctx.need("name"), ctx.need("publickey")
    _check_new(ctx, name)
    fp = sshkeys.fingerprint(public)
    if fp is None:
        raise errors.invalid("Public key is invalid")
    if any(k["fingerprint"] == fp for k in ctx.tx.all("keypair")):
        raise errors.invalid(f"A key pair with key '{public.strip()}' already exists.")
    doc = {"id": str(uuid.uuid4()), "name": name, "publickey": public.strip(), "fingerprint": fp}
    ctx.tx.put("keypair", doc)
    return {"keypair": shapes.keypair(doc)}


@command("listSSHKeyPairs")
def list_keypairs(ctx: Ctx) -> Inner:
    items = [
        shapes.keypair(k)
        for k in ctx.tx.all("keypair")
        if ctx.get("name") in (None, k["name"])
        and ctx.get("fingerprint") in (None, k["fingerprint"])
        and ctx.get("id") in (None, k["id"])
        and keyword_match(ctx, k["name"])
    ]
    return listing(ctx, "sshkeypair", items)


@command("deleteSSHKeyPair")
def delete(ctx: Ctx) -> Inner:
    name = ctx.need("name")
    doc = by_name(ctx.tx, name)
    if doc is None:
        raise errors.invalid(
            f"A key pair with name '{name}' does not exist for account {cat.ACCOUNT} "
            f"in specified domain id {cat.DOMAIN_ID}"
        )
    ctx.tx.delete("keypair", doc["id"])
    return {"success": True}
