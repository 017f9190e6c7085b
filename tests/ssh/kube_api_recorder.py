"""A recording stand-in for kube-apiserver: the few calls cordon, drain, delete and create make.

This is NOT kube-apiserver (none can run here: no kube-apiserver, kubelet or kubeadm binary).
It is an HTTPS server, with client-certificate auth, that answers the REST calls real
kubectl makes for `cordon`, `drain`, `delete node` and `create -f -` (a Secret) with
minimal valid JSON, keeps just enough state for them (nodes, their pods, one DaemonSet),
and records every call so a test can assert what kubectl asked the cluster to do.
Discovery is the legacy form (/api, /apis, /api/v1, ...), which kubectl falls back to.
Evictions behave as `evictions` says: "leave" (the pod goes), "pdb" (429, as a pod
disruption budget answers) or "stay" (accepted, but the pod never terminates).
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass
class FakeCluster:
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    evictions: str = "leave"  # leave | pdb | stay
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_node(self, name: str) -> None:
        self.nodes[name] = _obj("Node", name, spec={"unschedulable": False})

    def add_pod(self, node: str, namespace: str, name: str, owner: str | None = None) -> None:
        """A pod on `node`; `owner` "ReplicaSet/x" or "DaemonSet/x" (its controller)."""
        pod = _obj("Pod", name, namespace, spec={"nodeName": node, "containers": []})
        pod["status"] = {"phase": "Running"}
        if owner:
            kind, oname = owner.split("/")
            pod["metadata"]["ownerReferences"] = [
                {
                    "apiVersion": "apps/v1",
                    "kind": kind,
                    "name": oname,
                    "uid": f"uid-{oname}",
                    "controller": True,
                }
            ]
        self.pods[(namespace, name)] = pod

    def made(self, method: str, prefix: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path.startswith(prefix)]


def _obj(kind: str, name: str, namespace: str | None = None, **rest: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": f"uid-{name}", "resourceVersion": "1"}
    if namespace:
        meta["namespace"] = namespace
    return {"kind": kind, "apiVersion": "v1", "metadata": meta, **rest}


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _resource(
    name: str, kind: str, namespaced: bool, verbs: list[str], **extra: str
) -> dict[str, Any]:
    return {
        "name": name,
        "singularName": "",
        "namespaced": namespaced,
        "kind": kind,
        "verbs": verbs,
        **extra,
    }


_CRUD = ["create", "delete", "get", "list", "patch", "update", "watch"]
_DISCOVERY: dict[str, dict[str, Any]] = {
    "/version": {"major": "1", "minor": "31", "gitVersion": "v1.31.4", "platform": "linux/amd64"},
    "/api": {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    },
    "/apis": {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": group,
                "versions": [{"groupVersion": f"{group}/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": f"{group}/v1", "version": "v1"},
            }
            for group in ("apps", "policy")
        ],
    },
    "/api/v1": {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            _resource("nodes", "Node", False, _CRUD),
            _resource("pods", "Pod", True, _CRUD),
            _resource("pods/eviction", "Eviction", True, ["create"], group="policy", version="v1"),
            _resource("secrets", "Secret", True, _CRUD),
            _resource("namespaces", "Namespace", False, _CRUD),
        ],
    },
    "/apis/apps/v1": {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "apps/v1",
        "resources": [_resource("daemonsets", "DaemonSet", True, _CRUD)],
    },
    "/apis/policy/v1": {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "policy/v1",
        "resources": [_resource("poddisruptionbudgets", "PodDisruptionBudget", True, _CRUD)],
    },
    # kubectl create validates server-side when the OpenAPI v3 document says the server
    # takes `fieldValidation` on the kind's PATCH: say so for Secret, as a real server does.
    "/openapi/v3": {"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=1"}}},
    "/openapi/v3/api/v1": {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.31.4"},
        "paths": {
            "/api/v1/namespaces/{namespace}/secrets/{name}": {
                "patch": {
                    "x-kubernetes-group-version-kind": {
                        "group": "",
                        "version": "v1",
                        "kind": "Secret",
                    },
                    "parameters": [
                        {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}
                    ],
                    "responses": {},
                }
            }
        },
    },
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    cluster: FakeCluster

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        with self.cluster.lock:
            self.cluster.calls.append(Call(self.command, url.path, query, body))
            code, answer = self._answer(url.path.rstrip("/"), query, body)
        data = json.dumps(answer).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle

    def _answer(self, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        c = self.cluster
        if self.command == "GET" and path in _DISCOVERY:
            return 200, _DISCOVERY[path]
        parts = path.strip("/").split("/")
        # /api/v1/nodes[/<name>]
        if parts[:3] == ["api", "v1", "nodes"]:
            if len(parts) == 3 and self.command == "GET":
                wanted = query.get("fieldSelector", "").removeprefix("metadata.name=")
                items = [n for name, n in c.nodes.items() if not wanted or name == wanted]
                return 200, {"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": items}
            name = parts[3]
            if name not in c.nodes:
                return 404, _status(404, "NotFound", f'nodes "{name}" not found')
            if self.command == "PATCH":
                c.nodes[name]["spec"].update(body.get("spec", {}))
            if self.command == "DELETE":
                return 200, c.nodes.pop(name)
            return 200, c.nodes[name]
        # /api/v1/pods?fieldSelector=spec.nodeName=<node>
        if parts == ["api", "v1", "pods"]:
            node = query.get("fieldSelector", "").removeprefix("spec.nodeName=")
            items = [p for p in c.pods.values() if p["spec"]["nodeName"] == node]
            return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
        # /api/v1/namespaces/<ns>/pods/<name>[/eviction]
        if parts[:2] == ["api", "v1"] and len(parts) >= 6 and parts[4] == "pods":
            key = (parts[3], parts[5])
            if key not in c.pods:
                return 404, _status(404, "NotFound", f'pods "{key[1]}" not found')
            if parts[-1] == "eviction" and self.command == "POST":
                if c.evictions == "pdb":
                    return 429, _status(
                        429,
                        "TooManyRequests",
                        "Cannot evict pod as it would violate the pod's disruption budget.",
                    )
                if c.evictions == "leave":
                    del c.pods[key]
                return 201, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
            return 200, c.pods[key]
        # /apis/apps/v1/namespaces/<ns>/daemonsets/<name>: every DaemonSet a pod names exists.
        if parts[:3] == ["apis", "apps", "v1"] and len(parts) == 7 and parts[5] == "daemonsets":
            ds = _obj("DaemonSet", parts[6], parts[4])
            ds["apiVersion"] = "apps/v1"
            return 200, ds
        # /api/v1/namespaces/<ns>/secrets
        if parts[:2] == ["api", "v1"] and parts[4:] == ["secrets"] and self.command == "POST":
            made = dict(body)
            made["metadata"] = {**body["metadata"], "uid": "uid-secret", "resourceVersion": "1"}
            return 201, made
        return 404, _status(404, "NotFound", "the server could not find the requested resource")


class RecordingAPI:
    """Serve `cluster` over HTTPS on `sock` (already bound, e.g. inside a namespace)."""

    def __init__(self, cluster: FakeCluster, sock: socket.socket, tls: ssl.SSLContext) -> None:
        handler = type("Handler", (_Handler,), {"cluster": cluster})
        self.host, self.port = sock.getsockname()[:2]
        self.server = ThreadingHTTPServer((self.host, self.port), handler, bind_and_activate=False)
        self.server.socket.close()
        sock.listen()
        self.server.socket = tls.wrap_socket(sock, server_side=True)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
