"""A small async client for the Kubernetes API: the calls the operator, the store and drivers make.

kopf has its own client for watching and patching the objects it handles; this one is for
everything else (the intent ledgers, trigger Secrets, Receiver status, workload scale, Events).
Both are built from the same ``kopf.ConnectionInfo`` (``controller.operator.app.discover_connection``),
so there is one place that finds credentials.

Design points:

- Objects are plain JSON dicts (``KubeObject``); a caller that reads fields declares their TypedDict
  where it reads them (e.g. ``Scale`` in ``controller.drivers.scale_workload``). Paths are built by
  ``Ref`` so no caller formats URLs.
- Every error is classified once (``controller.kube.errors``); no retries here — the store's
  compare-and-swap loop and the reconciler decide what to retry.
- ``replace`` sends the object's ``metadata.resourceVersion``: the API server answers 409 when the
  object changed since it was read. That is the optimistic concurrency every read-modify-write in
  this project goes through.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import aiohttp

from controller.kube.errors import KubeError, KubeUnavailable, classify

if TYPE_CHECKING:  # only the operator builds a client from kopf's credentials, and it has kopf loaded
    import kopf

KubeObject = dict[str, Any]

WATCH_SECONDS = 300
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@dataclass(frozen=True)
class Ref:
    """Where an object (or a collection) lives: ``group`` is "" for the core API."""

    group: str
    version: str
    plural: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None

    def path(self) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if self.namespace is not None:
            base += f"/namespaces/{self.namespace}"
        base += f"/{self.plural}"
        if self.name is not None:
            base += f"/{self.name}"
            if self.subresource is not None:
                base += f"/{self.subresource}"
        return base

    def named(self, name: str, namespace: str | None = None, subresource: str | None = None) -> Ref:
        return replace(
            self,
            name=name,
            namespace=namespace if namespace is not None else self.namespace,
            subresource=subresource,
        )

    def within(self, namespace: str | None) -> Ref:
        return replace(self, namespace=namespace, name=None, subresource=None)


# The resources this project touches, as collection references; ``.named(...)`` picks one object.
RECEIVERS = Ref("webhook-service.dev", "v1", "receivers")
LEDGERS = Ref("webhook-service.dev", "v1", "intentledgers")
SECRETS = Ref("", "v1", "secrets")
NAMESPACES = Ref("", "v1", "namespaces")
EVENTS = Ref("", "v1", "events")
DEPLOYMENTS = Ref("apps", "v1", "deployments")
STATEFULSETS = Ref("apps", "v1", "statefulsets")
HPAS = Ref("autoscaling", "v2", "horizontalpodautoscalers")
LEASES = Ref("coordination.k8s.io", "v1", "leases")


class KubeClient:
    def __init__(self, session: aiohttp.ClientSession, server: str, headers: Mapping[str, str]) -> None:
        self._session = session
        self._server = server.rstrip("/")
        self._headers = dict(headers)

    @classmethod
    def from_connection(cls, info: kopf.ConnectionInfo, *, timeout: float = 30.0) -> KubeClient:
        connector = aiohttp.TCPConnector(ssl=_ssl_context(info), limit=32)
        session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=timeout), trust_env=info.trust_env
        )
        headers = {"Accept": "application/json", **info.as_http_headers()}
        return cls(session, info.server, headers)

    async def close(self) -> None:
        await self._session.close()

    async def get(self, ref: Ref) -> KubeObject:
        return await self._request("GET", ref)

    async def list(self, ref: Ref, *, label_selector: str | None = None) -> list[KubeObject]:
        params = {"labelSelector": label_selector} if label_selector else None
        body = await self._request("GET", ref, params=params)
        items: list[KubeObject] = body.get("items") or []
        return items

    async def create(self, ref: Ref, obj: Mapping[str, Any]) -> KubeObject:
        return await self._request("POST", ref.within(ref.namespace), body=obj)

    async def replace(self, ref: Ref, obj: Mapping[str, Any]) -> KubeObject:
        """PUT the whole object; its ``metadata.resourceVersion`` makes it a compare-and-swap."""
        return await self._request("PUT", ref, body=obj)

    async def patch(self, ref: Ref, patch: Any, *, content_type: str = MERGE_PATCH) -> KubeObject:
        """A merge patch by default; a ``metadata.resourceVersion`` in it makes it conditional too."""
        return await self._request("PATCH", ref, body=patch, content_type=content_type)

    async def delete(self, ref: Ref, *, resource_version: str | None = None) -> None:
        """With ``resource_version``, only that version is deleted: a newer one answers 409."""
        body = {"preconditions": {"resourceVersion": resource_version}} if resource_version else None
        await self._request("DELETE", ref, body=body)

    async def watch(self, ref: Ref, *, resource_version: str | None = None) -> AsyncIterator[KubeObject]:
        """Yield watch events ({"type", "object"}) until the server closes the stream."""
        # The server ends the watch after WATCH_SECONDS; a silent connection is given up a bit later.
        params = {"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": str(WATCH_SECONDS)}
        if resource_version:
            params["resourceVersion"] = resource_version
        url = self._server + ref.path()
        try:
            async with self._session.get(
                url,
                params=params,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(sock_connect=30, sock_read=WATCH_SECONDS + 30),
            ) as response:
                if response.status >= 400:
                    raise await _error(response)
                async for line in response.content:
                    if line.strip():
                        event: KubeObject = json.loads(line)
                        yield event
        except (aiohttp.ClientError, ConnectionError) as e:
            raise KubeUnavailable(f"watch {ref.path()} broke: {e}") from e

    async def _request(
        self,
        method: str,
        ref: Ref,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> KubeObject:
        headers = dict(self._headers)
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body)
        url = self._server + ref.path()
        try:
            async with self._session.request(
                method, url, data=data, params=params, headers=headers
            ) as response:
                if response.status >= 400:
                    raise await _error(response)
                result: KubeObject = await response.json(content_type=None)
                return result
        except KubeError:
            raise
        except (aiohttp.ClientError, ConnectionError, TimeoutError, ValueError) as e:
            raise KubeUnavailable(f"{method} {ref.path()}: {type(e).__name__}: {e}") from e


async def _error(response: aiohttp.ClientResponse) -> KubeError:
    reason, message = response.reason or "", ""
    try:
        status_body = await response.json(content_type=None)
        if isinstance(status_body, dict):
            reason = str(status_body.get("reason") or reason)
            message = str(status_body.get("message") or "")
    except (ValueError, aiohttp.ClientError):
        message = (await response.text())[:200]
    retry_after: float | None = None
    try:
        retry_after = float(response.headers.get("Retry-After", ""))
    except ValueError:
        retry_after = None
    return classify(response.status, reason, message, retry_after)


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    if not info.server.startswith("https"):
        return False
    context = ssl.create_default_context(
        cafile=os.fsdecode(info.ca_path) if info.ca_path else None,
        cadata=_pem_text(info.ca_data) if info.ca_data else None,
    )
    if info.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    cert = _pem_file(info.certificate_path, info.certificate_data)
    key = _pem_file(info.private_key_path, info.private_key_data)
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


def _pem_text(data: str | bytes) -> str:
    """kubeconfig's *-data fields are base64 of PEM; accept PEM as is too."""
    raw = data.encode() if isinstance(data, str) else data
    if raw.lstrip().startswith(b"-----"):
        return raw.decode()
    return base64.b64decode(raw).decode()


def _pem_file(
    path: str | bytes | os.PathLike[str] | os.PathLike[bytes] | None, data: str | bytes | None
) -> str | None:
    if path:
        return os.fsdecode(path)
    if not data:
        return None
    # ssl can load a client certificate only from a file.
    handle = tempfile.NamedTemporaryFile("w", prefix="kube-", suffix=".pem", delete=False)  # noqa: SIM115
    with handle:
        handle.write(_pem_text(data))
    os.chmod(handle.name, 0o600)
    return handle.name
