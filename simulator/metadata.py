"""The virtual router's metadata and password services, answered per VM by source address.

`/latest/user-data`, `/latest/meta-data/` (key names, one a line), `/latest/meta-data/<key>`
and the short form `/latest/<key>`; a VM sees only its own. The password server (port 8080
on a real router) answers `DomU_Request: send_my_password` with the VM's password or
`saved_password`, acknowledges `saved_password`, and says `bad_request` to anything else.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from stackfleet.simulator import catalog as cat
from stackfleet.simulator.state import Doc, Store

KEYS = (
    "service-offering",
    "availability-zone",
    "local-ipv4",
    "local-hostname",
    "public-ipv4",
    "public-hostname",
    "instance-id",
    "vm-id",
    "public-keys",
    "cloud-identifier",
    "hypervisor-host-name",
)

Lookup = Callable[[str], Doc | None]


def vm_by_address(store: Store) -> Lookup:
    def lookup(address: str) -> Doc | None:
        with store.transaction() as tx:
            for vm in tx.all("vm"):
                if not vm.get("removed") and vm.get("ipaddress") == address:
                    if vm.get("keypair"):
                        key = next(
                            (k for k in tx.all("keypair") if k["name"] == vm["keypair"]), None
                        )
                        vm["publickey"] = key["publickey"] if key else ""
                    return vm
        return None

    return lookup


def meta_value(vm: Doc, key: str) -> str | None:
    zone = cat.zone_by_id(vm["zoneid"])
    offering = cat.offering_by_id(vm["serviceofferingid"])
    values = {
        "service-offering": offering.name if offering else "",
        "availability-zone": zone.name if zone else "",
        "local-ipv4": vm.get("ipaddress") or "",
        "local-hostname": vm["name"],
        # Security-group zones give the guest a directly routed address: public = local.
        "public-ipv4": vm.get("ipaddress") or "",
        "public-hostname": vm.get("ipaddress") or "",
        "instance-id": vm["id"],
        "vm-id": vm["id"],
        "public-keys": vm.get("publickey") or "",
        "cloud-identifier": f"CloudStack-{{{cat.ACCOUNT_ID}}}",
        "hypervisor-host-name": (
            cat.host_name(zone, vm["hostindex"]) if zone and vm.get("hostindex") is not None else ""
        ),
    }
    return values.get(key)


class MetadataHandler(BaseHTTPRequestHandler):
    server: MetadataServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        vm = self.server.lookup(self.client_address[0])
        path = self.path.split("?")[0].rstrip("/")
        if vm is None:
            self._send(404, b"")
            return
        if path in ("/latest/user-data", "/latest/userdata"):
            data = base64.b64decode(vm["userdata"]) if vm.get("userdata") else None
            self._send(200 if data else 404, data or b"")
            return
        if path == "/latest/meta-data":
            self._send(200, "\n".join(KEYS).encode())
            return
        for prefix in ("/latest/meta-data/", "/latest/"):
            if path.startswith(prefix):
                value = meta_value(vm, path[len(prefix) :])
                if value is not None:
                    self._send(200, value.encode())
                    return
        self._send(404, b"")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class PasswordHandler(MetadataHandler):
    def do_GET(self) -> None:
        vm = self.server.lookup(self.client_address[0])
        request = (self.headers.get("DomU_Request") or "").strip()
        if vm is None or request not in ("send_my_password", "saved_password"):
            self._send(200, b"bad_request")
            return
        # Templates here are not password-enabled: no password is ever pending.
        self._send(200, b"saved_password")


class MetadataServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        lookup: Lookup,
        handler: type[BaseHTTPRequestHandler] = MetadataHandler,
    ) -> None:
        self.lookup = lookup
        super().__init__(address, handler)
