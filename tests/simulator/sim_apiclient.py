"""A minimal signing CloudStack client for the simulator tests (stdlib only).

It signs as CloudStack's ApiServer verifies (the simulator's signing module is tested
against an independent HMAC computation in test_signing.py).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from stackfleet.simulator import signing


class Api:
    def __init__(self, endpoint: str, key: str, secret: str) -> None:
        self.endpoint, self.key, self.secret = endpoint, key, secret

    def signed(self, params: dict[str, Any], secret: str | None = None) -> dict[str, str]:
        out = {k: str(v) for k, v in params.items()}
        out.update(apiKey=self.key, response="json")
        out["signature"] = signing.sign(out, secret or self.secret)
        return out

    def raw(
        self,
        command: str,
        method: str = "GET",
        body_keys: tuple[str, ...] = (),
        secret: str | None = None,
        **params: Any,
    ) -> tuple[int, dict[str, Any]]:
        signed = self.signed({"command": command, **params}, secret)
        query = {k: v for k, v in signed.items() if k not in body_keys}
        body = {k: v for k, v in signed.items() if k in body_keys}
        url = self.endpoint + "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
        data = None
        if method == "POST":
            data = urllib.parse.urlencode(body, quote_via=urllib.parse.quote).encode()
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as err:
            return err.code, json.load(err)

    def __call__(self, command: str, **params: Any) -> dict[str, Any]:
        status, body = self.raw(command, **params)
        assert status == 200, body
        return body[f"{command.lower()}response"]

    def wait(self, jobid: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = self("queryAsyncJobResult", jobid=jobid)
            if job["jobstatus"] != 0:
                return job
            assert time.monotonic() < deadline, f"job {jobid} still pending"
            time.sleep(0.02)

    def ids(self) -> tuple[dict[str, str], str, dict[str, str]]:
        """(zone name -> id, a template id, offering name -> id)."""
        zones = {z["name"]: z["id"] for z in self("listZones")["zone"]}
        template = self("listTemplates", templatefilter="executable")["template"][0]["id"]
        offerings = {o["name"]: o["id"] for o in self("listServiceOfferings")["serviceoffering"]}
        return zones, template, offerings

    def deploy(self, zone: str, wait: bool = True, **params: Any) -> dict[str, Any]:
        zones, template, offerings = self.ids()
        resp = self(
            "deployVirtualMachine",
            zoneid=zones[zone],
            templateid=template,
            serviceofferingid=offerings["Small"],
            **params,
        )
        if not wait:
            return resp
        job = self.wait(resp["jobid"])
        assert job["jobstatus"] == 1, job
        return job["jobresult"]["virtualmachine"]
