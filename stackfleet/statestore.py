"""The state store: where a cluster's PKI and tokens live besides the machine that ran `up`.

The local directory ($STACKFLEET_HOME/clusters/<name>) is the working copy every command
reads; it is the whole story by default. With `state: s3://bucket/prefix` in the spec (or
STACKFLEET_STATE) the working copy is pulled from the store before a command and pushed
back after `up`, so a fresh CI runner or another operator manages the same cluster.

One small interface (`Store`: get with an etag, put conditional on an etag or on absence,
list, delete), two implementations: `LocalStore` (a folder; `file:///path` or a plain path)
and `S3Store` (any S3-compatible endpoint, through boto3).

Object layout: one object per cluster, `<prefix>/<cluster>/state.json`, holding every file
of the working copy. One object means one atomic PUT: a store that dies mid-run leaves the
previous version or the new one, never half of each. It is created with `If-None-Match: *`
(so two runners cannot both create the CAs: the second gets 412 and takes the first's),
and replaced with `If-Match: <etag read>` (so no update is lost). Certificates and public
keys are stored as text; every other file (private keys, the bootstrap token, the
operator's key) is encrypted on the client with AES-256-GCM under the user's key
(STACKFLEET_STATE_KEY, or STACKFLEET_STATE_KEY_FILE: 32 random bytes, base64), with the
object's cluster and file name as associated data, so nothing secret reaches the store in
plaintext and no entry can be moved to another name.

The cloud records the CA fingerprints (tags on the cluster's etcd security group): `up`
refuses a working copy whose CAs are missing or differ, instead of making new CAs for a
running cluster.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlparse

from stackfleet import state
from stackfleet.errors import BadInput, CloudError

FORMAT = "stackfleet-state/1"
OBJECT = "state.json"
# CA stem in pki/ -> the cloud tag recording its certificate's sha256.
CA_TAGS = {
    "etcd-ca": "stackfleet:ca-etcd",
    "kube-ca": "stackfleet:ca-kube",
    "front-proxy-ca": "stackfleet:ca-front-proxy",
}
PUBLIC_SUFFIXES = (".crt", ".pub")  # stored as text; everything else is encrypted
NOT_SYNCED = ("admin.kubeconfig",)  # derived on demand, holds a fresh client key
KEY_CHECK = b"stackfleet state key check"


class Conflict(Exception):
    """A conditional write lost: the object exists (create) or changed (If-Match)."""


class StoreUnavailable(CloudError):
    """The store did not answer: nothing was written."""


class Store(Protocol):
    url: str

    def get(self, key: str) -> tuple[bytes, str] | None: ...

    def put(
        self, key: str, data: bytes, *, if_match: str | None = None, create: bool = False
    ) -> str: ...

    def list(self, prefix: str = "") -> list[str]: ...

    def delete(self, key: str) -> None: ...


# ---- the local folder ---------------------------------------------------------------------


class LocalStore:
    """A folder as a store: etag = sha256 of the content; conditions checked under flock."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"file://{root}"

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise BadInput(f"state key {key!r}: outside {self.root}")
        return path

    @contextmanager
    def _locked(self) -> Iterator[None]:
        state.private_dir(self.root)
        with (self.root / ".lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def get(self, key: str) -> tuple[bytes, str] | None:
        path = self._path(key)
        if not path.is_file():
            return None
        data = path.read_bytes()
        return data, hashlib.sha256(data).hexdigest()

    def put(
        self, key: str, data: bytes, *, if_match: str | None = None, create: bool = False
    ) -> str:
        from stackfleet.pki import write_private

        with self._locked():
            current = self.get(key)
            if create and current is not None:
                raise Conflict(key)
            if if_match is not None and (current is None or current[1] != if_match):
                raise Conflict(key)
            path = self._path(key)
            state.private_dir(path.parent)
            write_private(path, data.decode())
        return hashlib.sha256(data).hexdigest()

    def list(self, prefix: str = "") -> list[str]:
        if not self.root.is_dir():
            return []
        keys = [p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()]
        return sorted(k for k in keys if k.startswith(prefix) and k != ".lock")

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


# ---- S3 -----------------------------------------------------------------------------------


class S3Store:
    """Any S3-compatible endpoint. Settings from the URL's query or the environment:
    endpoint (?endpoint= / STACKFLEET_STATE_ENDPOINT / AWS_ENDPOINT_URL_S3), region
    (?region= / AWS_REGION), path-style (?path_style=1 / STACKFLEET_STATE_PATH_STYLE=1),
    credentials as boto3 finds them (AWS_* variables, ?profile= / AWS_PROFILE, ~/.aws)."""

    def __init__(self, url: str) -> None:
        import boto3
        from botocore.config import Config

        # botocore logs signed headers and bodies at DEBUG: never into a CI log (-v, --debug).
        for name in ("boto3", "botocore", "s3transfer", "urllib3.connectionpool"):
            logging.getLogger(name).setLevel(logging.WARNING)
        parsed = urlparse(url)
        if not parsed.netloc:
            raise BadInput(f"state {url}: no bucket (write s3://bucket/prefix)")
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        unknown = set(query) - {"endpoint", "region", "path_style", "profile"}
        if unknown:
            raise BadInput(
                f"state {url}: unknown setting(s) {', '.join(sorted(unknown))} "
                "(known: endpoint, region, path_style, profile)"
            )
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        env = os.environ.get
        self.endpoint = query.get("endpoint") or env("STACKFLEET_STATE_ENDPOINT") or None
        path_style = query.get("path_style") or env("STACKFLEET_STATE_PATH_STYLE", "")
        config = Config(
            connect_timeout=5,
            read_timeout=20,
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": "path" if path_style.lower() in ("1", "true") else "auto"},
        )
        try:
            session = boto3.Session(
                profile_name=query.get("profile") or None,
                region_name=query.get("region") or env("AWS_REGION") or None,
            )
            self.client = session.client("s3", endpoint_url=self.endpoint, config=config)
        except Exception as exc:  # ProfileNotFound and the like: named, one line
            raise BadInput(f"state {self.url}: {type(exc).__name__}: {exc}") from None

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            EndpointConnectionError,
            NoCredentialsError,
        )

        try:
            yield
        except NoCredentialsError:
            raise BadInput(
                f"state {self.url}: no S3 credentials (set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
            ) from None
        except (EndpointConnectionError, ConnectionError) as exc:
            raise StoreUnavailable(
                f"state {self.url}: the store is unreachable ({type(exc).__name__}) while "
                f"{what}; nothing was written: run the same command again"
            ) from None
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status == 412:
                raise Conflict(what) from None
            if code in ("NoSuchBucket",):
                raise BadInput(f"state {self.url}: no bucket {self.bucket!r} (create it)") from None
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"):
                raise BadInput(
                    f"state {self.url}: the store refused the credentials ({code}) while {what}"
                ) from None
            raise StoreUnavailable(f"state {self.url}: {code or status} while {what}") from None
        except BotoCoreError as exc:
            raise StoreUnavailable(
                f"state {self.url}: {type(exc).__name__} while {what}; nothing was written"
            ) from None

    def get(self, key: str) -> tuple[bytes, str] | None:
        from botocore.exceptions import ClientError

        try:
            with self._errors(f"reading {key}"):
                try:
                    obj = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                        return None
                    raise
                return obj["Body"].read(), str(obj["ETag"])
        except Conflict:
            return None

    def put(
        self, key: str, data: bytes, *, if_match: str | None = None, create: bool = False
    ) -> str:
        extra: dict[str, str] = {}
        if create:
            extra["IfNoneMatch"] = "*"
        if if_match is not None:
            extra["IfMatch"] = if_match
        with self._errors(f"writing {key}"):
            answer = self.client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, **extra
            )
        return str(answer["ETag"])

    def list(self, prefix: str = "") -> list[str]:
        keys: list[str] = []
        with self._errors("listing"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key(prefix)
            )
            for page in pages:
                keys += [o["Key"] for o in page.get("Contents", [])]
        cut = len(self.prefix) + 1 if self.prefix else 0
        return sorted(k[cut:] for k in keys)

    def delete(self, key: str) -> None:
        with self._errors(f"deleting {key}"):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))


def open_store(url: str | None) -> Store | None:
    """The store named by the spec's `state:` or STACKFLEET_STATE; None: the local folder."""
    url = (url or os.environ.get("STACKFLEET_STATE", "")).strip()
    if not url or url == "local":
        return None
    if url.startswith("s3://"):
        return S3Store(url)
    if url.startswith("file://"):
        url = url[len("file://") :]
    if url.startswith("/"):
        return LocalStore(Path(url))
    raise BadInput(f"state {url}: not s3://bucket/prefix or file:///absolute/path")


# ---- encryption ---------------------------------------------------------------------------


def encryption_key(store_url: str) -> bytes:
    """The user's AES-256 key: STACKFLEET_STATE_KEY or STACKFLEET_STATE_KEY_FILE."""
    text = os.environ.get("STACKFLEET_STATE_KEY", "").strip()
    source = "STACKFLEET_STATE_KEY"
    if not text and os.environ.get("STACKFLEET_STATE_KEY_FILE"):
        path = Path(os.environ["STACKFLEET_STATE_KEY_FILE"]).expanduser()
        source = f"STACKFLEET_STATE_KEY_FILE {path}"
        try:
            if path.stat().st_mode & 0o077:
                raise BadInput(f"{source}: readable by others: chmod 600 {path}")
            text = path.read_text().strip()
        except OSError as exc:
            raise BadInput(f"{source}: cannot read ({exc.strerror})") from None
    if not text:
        raise BadInput(
            f"state {store_url}: no encryption key: set STACKFLEET_STATE_KEY or "
            "STACKFLEET_STATE_KEY_FILE (32 random bytes, base64: openssl rand -base64 32)"
        )
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise BadInput(f"{source}: not 32 bytes in base64 (make one: openssl rand -base64 32)")
    return key


def _seal(key: bytes, aad: str, data: bytes) -> str:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    return base64.b64encode(nonce + AESGCM(key).encrypt(nonce, data, aad.encode())).decode()


def _open(key: bytes, aad: str, blob: str) -> bytes | None:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    raw = base64.b64decode(blob)
    try:
        return AESGCM(key).decrypt(raw[:12], raw[12:], aad.encode())
    except InvalidTag:
        return None


# ---- the working copy <-> one object ------------------------------------------------------


def local_files(cluster: str) -> dict[str, str]:
    """Every file of the cluster's working copy, by path relative to its folder."""
    root = state.home() / "clusters" / cluster
    if not root.is_dir():
        return {}
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not path.name.startswith(".") and rel not in NOT_SYNCED:
            out[rel] = path.read_text()
    return out


def write_local(cluster: str, files: Mapping[str, str], replace: bool = False) -> None:
    from stackfleet.pki import write_private

    root = state.cluster_dir(cluster)
    if replace:
        for sub in ("pki", "ssh"):
            shutil.rmtree(root / sub, ignore_errors=True)
    for rel, text in files.items():
        path = root / rel
        if root.resolve() not in path.resolve().parents:
            raise BadInput(f"state for {cluster}: entry {rel!r} escapes the cluster folder")
        state.private_dir(path.parent)
        write_private(path, text)


def ca_fingerprints(files: Mapping[str, str]) -> dict[str, str]:
    """CA tag -> sha256 (hex) of the CA certificate's DER, for the CAs present."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    out = {}
    for stem, tag in CA_TAGS.items():
        pem = files.get(f"pki/{stem}.crt")
        if pem:
            cert = x509.load_pem_x509_certificate(pem.encode())
            out[tag] = cert.fingerprint(hashes.SHA256()).hex()
    return out


def encode(cluster: str, files: Mapping[str, str], key: bytes) -> bytes:
    entries: dict[str, dict[str, str]] = {}
    for rel, text in sorted(files.items()):
        if rel.endswith(PUBLIC_SUFFIXES):
            entries[rel] = {"text": text}
        else:
            entries[rel] = {"sealed": _seal(key, f"{cluster}/{rel}", text.encode())}
    doc = {
        "format": FORMAT,
        "cluster": cluster,
        "key_check": _seal(key, f"{cluster}/key-check", KEY_CHECK),
        "ca_fingerprints": ca_fingerprints(files),
        "files": entries,
    }
    return json.dumps(doc, indent=1, sort_keys=True).encode()


def decode(cluster: str, data: bytes, key: bytes, where: str) -> dict[str, str]:
    try:
        doc = json.loads(data)
        assert doc.get("format") == FORMAT and doc.get("cluster") == cluster
    except (ValueError, AssertionError):
        raise BadInput(f"{where}: not a stackfleet state object for {cluster!r}") from None
    if _open(key, f"{cluster}/key-check", doc["key_check"]) != KEY_CHECK:
        raise BadInput(
            f"{where}: the encryption key does not open this state (wrong "
            "STACKFLEET_STATE_KEY / STACKFLEET_STATE_KEY_FILE: use the key it was written with)"
        )
    files: dict[str, str] = {}
    for rel, entry in doc["files"].items():
        if "text" in entry:
            files[rel] = entry["text"]
            continue
        plain = _open(key, f"{cluster}/{rel}", entry["sealed"])
        if plain is None:
            raise BadInput(f"{where}: entry {rel} does not decrypt (tampered, or another key)")
        files[rel] = plain.decode()
    return files


@dataclass
class Remote:
    """What this run read from the store: the version its next write is conditional on."""

    store: Store
    cluster: str
    key: bytes
    etag: str | None = None
    files: dict[str, str] | None = None  # None: no object in the store

    @property
    def object_key(self) -> str:
        return f"{self.cluster}/{OBJECT}"

    @property
    def where(self) -> str:
        return f"{self.store.url}/{self.object_key}"

    def read(self) -> dict[str, str] | None:
        got = self.store.get(self.object_key)
        if got is None:
            self.etag, self.files = None, None
        else:
            self.files = decode(self.cluster, got[0], self.key, self.where)
            self.etag = got[1]
        return self.files

    def write(self, files: Mapping[str, str]) -> bool:
        """Create the object (If-None-Match) or replace the version read (If-Match).

        Raises Conflict if another runner wrote first. False: nothing to write."""
        if self.files is not None and dict(files) == self.files:
            return False
        data = encode(self.cluster, files, self.key)
        if self.etag is None:
            self.etag = self.store.put(self.object_key, data, create=True)
        else:
            self.etag = self.store.put(self.object_key, data, if_match=self.etag)
        self.files = dict(files)
        return True


def connect(cluster: str, url: str | None) -> Remote | None:
    store = open_store(url)
    if store is None:
        return None
    return Remote(store, cluster, encryption_key(store.url))


def pull(cluster: str, url: str | None) -> Remote | None:
    """Before a command that reads the PKI: the store's working copy, written locally.

    Local files the store lacks are kept if the CAs agree: a run the store failed under
    (it was unreachable at the end) kept the new nodes' keys here, and pushes them next."""
    remote = connect(cluster, url)
    if remote is not None and remote.read() is not None:
        assert remote.files is not None
        same_cas = ca_fingerprints(local_files(cluster)) == ca_fingerprints(remote.files)
        write_local(cluster, remote.files, replace=not same_cas)
    return remote


def push(remote: Remote) -> bool:
    """After `up`: the working copy back to the store, conditional on the version read.

    If another run wrote in between, its files are kept and ours added, unless the CAs
    differ (then nothing is written and the run says so)."""
    for _ in range(5):
        ours = local_files(remote.cluster)
        try:
            return remote.write(ours)
        except Conflict:
            theirs = remote.read() or {}
            if ca_fingerprints(theirs) != ca_fingerprints(ours):
                raise BadInput(
                    f"{remote.where}: another run stored different CAs for "
                    f"{remote.cluster!r}; run `stackfleet state pull` and check the cluster"
                ) from None
            write_local(remote.cluster, {**ours, **theirs})
    raise StoreUnavailable(f"{remote.where}: kept changing under us: run again")


# ---- `up`'s guard: one PKI per cluster ----------------------------------------------------


def pki_refusal(
    cluster: str,
    have: Mapping[str, str],
    cloud_tags: Mapping[str, str],
    machines: int,
    where: str | None = None,
) -> str | None:
    """Why a run with the CA fingerprints `have` must not touch this cluster (one line),
    or None. `plan` and `up` refuse on the same line: never new CAs for a running
    cluster, never silently another PKI."""
    recorded = {t: v for t, v in cloud_tags.items() if t in CA_TAGS.values()}
    folder = state.home() / "clusters" / cluster
    where = where or str(folder / "pki")
    how = (
        f"bring the cluster's PKI: `stackfleet state pull --from <store>` (or set `state:` / "
        f"STACKFLEET_STATE to the store that holds it), or copy {folder} from the machine "
        "that ran `up`; nothing was changed"
    )
    if recorded and not have:
        return (
            f"cluster {cluster} runs with CAs recorded on the cloud "
            f"(tags {', '.join(sorted(recorded))}) but {where} holds no PKI: {how}"
        )
    if any(have.get(tag) != value for tag, value in recorded.items()):
        return (
            f"cluster {cluster}: the CAs in {where} differ from those recorded on the "
            f"cloud (tags {', '.join(sorted(recorded))}): {how}"
        )
    if not have and machines:
        return f"cluster {cluster} has {machines} VM(s) but {where} holds no PKI: {how}"
    return None


def plan_refusals(cluster: str, store_url: str | None, live: Any) -> list[str]:
    """`plan`'s side of the guard (one call from plan.refusals): the local PKI against
    the cloud's tags. With a state store, `up` pulls the PKI first, so the store's CA
    fingerprints (stored in clear in its object) stand in for a missing or other local
    copy."""
    have = ca_fingerprints(local_files(cluster))
    machines = len(live.machines)
    if pki_refusal(cluster, have, live.tags, machines) is None:
        return []
    store = open_store(store_url)
    if store is not None:
        got = store.get(f"{cluster}/{OBJECT}")
        if got is not None:
            try:
                stored = dict(json.loads(got[0]).get("ca_fingerprints") or {})
            except ValueError:
                stored = {}
            where = f"{store.url}/{cluster}/{OBJECT}"
            why = pki_refusal(cluster, stored, live.tags, machines, where)
            return [why] if why else []
    why = pki_refusal(cluster, have, live.tags, machines)
    return [why] if why else []


def ensure_pki(
    cluster: str, remote: Remote | None, cloud_tags: Mapping[str, str], machines: int
) -> dict[str, str]:
    """Check the working copy's CAs against those the cloud records; make CAs only for a
    cluster that has none anywhere. Returns the fingerprint tags to record."""
    from stackfleet.pki import load_or_create

    have = ca_fingerprints(local_files(cluster))
    where = remote.where if remote else None
    refused = pki_refusal(cluster, have, cloud_tags, machines, where)
    if refused:
        raise BadInput(refused)
    if len(have) == len(CA_TAGS) and (remote is None or remote.files is not None):
        return have
    # CAs missing (none yet, or a run killed while making them): make only what is missing,
    # and claim the store with them before any machine exists.
    load_or_create(state.cluster_dir(cluster) / "pki", cluster, [])
    if remote is not None and remote.files is None:
        try:
            remote.write(local_files(cluster))
        except Conflict:
            # Another runner created the CAs first: exactly one set wins, and it is theirs.
            theirs = remote.read()
            if theirs is None:
                raise StoreUnavailable(f"{remote.where}: gone after a 412: run again") from None
            write_local(cluster, theirs, replace=True)
    return ca_fingerprints(local_files(cluster))


@contextmanager
def guard_up(cluster: str, url: str | None, prov: Any) -> Iterator[None]:
    """Around `up`: pull, check or make the CAs, run, push back, record fingerprints."""
    remote = pull(cluster, url)
    live = prov.live_state(cluster)
    wanted = ensure_pki(cluster, remote, live.tags, len(live.machines))
    try:
        yield
    finally:
        if remote is not None:
            push(remote)
    live_tags = prov.live_state(cluster).tags
    missing = {t: v for t, v in wanted.items() if live_tags.get(t) != v}
    if missing:
        prov.set_cluster_tags(cluster, missing)
        prov.settle()


def forget(cluster: str, url: str | None) -> bool:
    """After `down`: remove the cluster's object from the store (no key needed)."""
    store = open_store(url)
    if store is None:
        return False
    store.delete(f"{cluster}/{OBJECT}")
    return True
