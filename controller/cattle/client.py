"""A small client for Cattle's v2-beta API (also ``/v1``): read a project, read, list and scale services,
upgrade them in service (``upgrade_service``, ``finish_upgrade``, ``rollback_service``), list, create
and evacuate hosts; and POST through Cattle's service proxy (``proxy_post``).

Design decisions:

- No retries here. The reconciler owns the one retry loop (with backoff and ``Retry-After``); a
  client that also retried would multiply attempts and hide how long Cattle really was away.
- Every failure becomes one of ``controller.cattle.errors``, chosen by HTTP status (or status 0 for
  transport failures), chained ``from`` the original, carrying Cattle's ``code``/``message`` and
  ``Retry-After``. Bodies are truncated so an HTML error page can't flood the logs.
- The answer is checked for shape (a JSON object with an ``id``; a collection with ``data``) so a
  wrong URL that happens to answer 200 (a proxy's login page, another API) is a protocol error, not
  a service with no scale.
- ``list_services`` and ``list_hosts`` follow ``pagination.next``, but only its query (the ``marker``)
  is applied to the collection URL we built. Cattle builds links from the request's Host /
  X-Forwarded headers, which a proxy can get wrong, and following a host named by an answer would
  send our credentials there.
- Service actions are POSTed to ``{service}/?action=name`` without first checking the resource's
  ``actions`` map (go-rancher does): that would cost a GET and still race. Cattle's own refusal, 422
  ``ActionNotAvailable``, arrives classified like any other 422.
- Credentials go only into the ``Authorization`` header; nothing logged here contains them.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any, cast
from urllib.parse import quote

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from controller.cattle.errors import (
    CattleAnswerTooLarge,
    CattleBusy,
    CattleError,
    CattleNotFound,
    CattleProtocolError,
    CattleRequestError,
    CattleTimeout,
    CattleUnauthorized,
    CattleUnavailable,
)
from controller.cattle.reachability import CattleReachability
from controller.cattle.shapes import CattleCollection, CattleErrorBody, CattleHost, CattleService
from controller.metrics import Metrics

logger = logging.getLogger(__name__)

MAX_BODY_IN_ERROR = 500
MAX_PAGES = 10_000  # a guard against a server whose "next" never ends
API_VERSIONS = ("v1", "v2-beta")  # the last segment of the API base; the proxy lives beside it


class CattleClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        access_key: str | None,
        secret_key: str | None,
        timeout: float = 10.0,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._headers = {"Accept": "application/json", "X-API-No-Challenge": "true"}
        if access_key:
            self._headers["Authorization"] = basic_auth(access_key, secret_key or "")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._metrics = metrics
        self._clock = clock
        self.reachability = CattleReachability()  # what every request's outcome says about Cattle

    @property
    def base_url(self) -> str:
        return self._base

    async def get_project(self, project_id: str) -> dict[str, Any]:
        return resource(await self._request("GET", self._project_url(project_id)), "project")

    async def get_service(self, project_id: str, service_id: str) -> CattleService:
        data = await self._request("GET", self._service_url(project_id, service_id))
        return service(data)

    async def set_service_scale(self, project_id: str, service_id: str, scale: int) -> CattleService:
        """PUT a partial update of the scale alone; Cattle answers with the whole (transitioning) resource."""
        data = await self._request("PUT", self._service_url(project_id, service_id), body={"scale": scale})
        return service(data)

    async def upgrade_service(
        self, project_id: str, service_id: str, strategy: Mapping[str, Any]
    ) -> CattleService:
        """Start an in-service upgrade. ``strategy`` is Cattle's ``inServiceStrategy``: ``batchSize``,
        ``intervalMillis``, ``startFirst``, the full new ``launchConfig`` and/or ``secondaryLaunchConfigs``.
        Cattle answers 202 with the service already ``upgrading``; poll it until it is ``upgraded``."""
        return await self._service_action(project_id, service_id, "upgrade", {"inServiceStrategy": strategy})

    async def finish_upgrade(self, project_id: str, service_id: str) -> CattleService:
        """Drop the previous launch configs of an ``upgraded`` service (it goes ``finishing-upgrade``)."""
        return await self._service_action(project_id, service_id, "finishupgrade")

    async def rollback_service(self, project_id: str, service_id: str) -> CattleService:
        """Restore the launch configs from before the upgrade (it goes ``rolling-back``, then ``active``)."""
        return await self._service_action(project_id, service_id, "rollback")

    async def may_change_project(self, project_id: str) -> bool:
        """Whether this client's key may create and update the project's services and create its hosts,
        as the project's schemas served to the key show (Cattle serves each role its own schemas).
        A read-only user's key may do neither, a restricted user's may not touch hosts. Unknown keys
        raise ``CattleUnauthorized`` (401), an inaccessible project too (403)."""
        methods = {
            str(item.get("id")): (item.get("collectionMethods") or [], item.get("resourceMethods") or [])
            for item in await self._list_all(f"{self._project_url(project_id)}/schemas", {})
        }
        service_collection, service_resource = methods.get("service", ([], []))
        host_collection, _ = methods.get("host", ([], []))
        return "POST" in service_collection and "PUT" in service_resource and "POST" in host_collection

    async def list_services(self, project_id: str, **filters: str) -> list[CattleService]:
        """All services of the project matching ``filters`` (e.g. ``name="web"``), across every page."""
        items = await self._list_all(f"{self._project_url(project_id)}/services", filters)
        return [service(item) for item in items]

    async def list_hosts(self, project_id: str, **filters: str) -> list[CattleHost]:
        """All hosts of the project matching ``filters``, across every page (removed ones are hidden)."""
        items = await self._list_all(f"{self._project_url(project_id)}/hosts", filters)
        return [host(item) for item in items]

    async def check_access(self) -> None:
        """One cheap authenticated read (a page of one project): raises the ``CattleError`` that says why
        Cattle can't be used with this client's URL and key."""
        collection(await self._request("GET", str(URL(f"{self._base}/projects").with_query(limit="1"))))

    async def list_projects(self) -> list[dict[str, Any]]:
        """Every project the key sees, across every page."""
        return await self._list_all(f"{self._base}/projects", {})

    async def list_generic_objects(self, project_id: str, **filters: str) -> list[dict[str, Any]]:
        """The project's generic objects matching ``filters`` (``kind="webhookReceiver"``), every page."""
        return await self._list_all(f"{self._project_url(project_id)}/genericobjects", filters)

    async def get_host(self, project_id: str, host_id: str) -> CattleHost:
        return host(await self._request("GET", self._host_url(project_id, host_id)))

    async def create_host(self, project_id: str, body: Mapping[str, Any]) -> CattleHost:
        """POST a new host (``hostname``, ``labels`` and exactly one ``<driver>Config``); Cattle answers
        at once with the host in ``requested`` and provisions it asynchronously."""
        return host(await self._request("POST", f"{self._project_url(project_id)}/hosts", body=body))

    async def evacuate_host(self, project_id: str, host_id: str) -> dict[str, Any]:
        """Remove a host the way Cattle does: a ``host.evacuate`` event with ``deleteHost`` deactivates it,
        removes its containers, then removes and purges the host. Returns the event resource."""
        body = {"eventType": "host.evacuate", "hostId": host_id, "deleteHost": True}
        data = await self._request("POST", f"{self._project_url(project_id)}/externalhostevents", body=body)
        return resource(data, "externalHostEvent")

    async def proxy_post(
        self,
        project_id: str,
        service_name: str,
        port: int,
        path: str,
        query: Sequence[tuple[str, str]],
        body: bytes,
        content_type: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        timeout: float,  # noqa: ASYNC109 - an aiohttp per-request timeout, not a wait of ours
        max_bytes: int,
    ) -> tuple[int, bytes, str]:
        """POST ``body`` to a service's port through Cattle's proxy (``/r/projects/{id}/{name}:{port}/...``).

        ``headers`` go along as given (repeats kept), except that the credentials and
        ``X-API-No-Challenge`` are Cattle's and ``Content-Type`` is ``content_type``'s; ``Accept`` is
        ``*/*`` unless they name one. The caller has dropped hop-by-hop headers.

        Any HTTP answer is the upstream's, returned as (status, body, content type) and never raised:
        the caller passes it on. Only a missing answer raises: ``CattleTimeout`` after ``timeout``
        seconds, ``CattleUnavailable`` when nothing answers, ``CattleAnswerTooLarge`` over ``max_bytes``.
        """
        # The ids are schema-checked (no "/", "?" or "#"); yarl percent-encodes what else needs it.
        url = URL(f"{self.proxy_base}/r/projects/{project_id}/{service_name}:{port}/{path.lstrip('/')}")
        url = url.with_query(list(query))
        where = f"POST {url.path}"
        sent = CIMultiDict(headers)
        for name in ("Authorization", "Content-Type"):
            sent.popall(name, None)
        sent.setdefault("Accept", "*/*")
        for name, value in self._headers.items():
            if name != "Accept":
                sent[name] = value
        if content_type:
            sent["Content-Type"] = content_type
        status = 0
        try:
            async with self._session.post(
                url, data=body, headers=sent, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as response:
                status = response.status
                if response.content_length is not None and response.content_length > max_bytes:
                    raise CattleAnswerTooLarge(
                        f"{where}: the answer has {response.content_length} bytes, over {max_bytes}",
                        status=status,
                    )
                data = await response.content.read(max_bytes + 1)
                if len(data) > max_bytes:
                    raise CattleAnswerTooLarge(
                        f"{where}: the answer is over {max_bytes} bytes", status=status
                    )
                answer_type = response.headers.get("Content-Type", "")
        except TimeoutError as e:
            raise CattleTimeout(f"{where}: no answer within {timeout:g}s") from e
        except aiohttp.ClientError as e:
            raise CattleUnavailable(f"{where}: {type(e).__name__}: {e}") from e
        finally:
            self._count("POST", status)
        logger.debug("%s -> %d", where, status)
        return status, data, answer_type

    @property
    def proxy_base(self) -> str:
        """Cattle's root: the API base without its version segment (``/v2-beta``)."""
        head, _, last = self._base.rpartition("/")
        return head if last in API_VERSIONS else self._base

    async def _list_all(self, collection_url: str, filters: Mapping[str, str]) -> list[dict[str, Any]]:
        url = URL(collection_url).with_query(filters)
        items: list[dict[str, Any]] = []
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            page = collection(await self._request("GET", str(url)))
            items.extend(page["data"])
            next_link = (page.get("pagination") or {}).get("next")
            if not next_link:
                return items
            url = url.with_query(URL(next_link).query)
            if url.query_string in seen:
                raise CattleProtocolError(f"GET {url.path}: pagination.next repeats a page ({next_link})")
            seen.add(url.query_string)
        raise CattleProtocolError(f"GET {url.path}: more than {MAX_PAGES} pages")

    async def _service_action(
        self, project_id: str, service_id: str, action: str, body: Mapping[str, Any] | None = None
    ) -> CattleService:
        url = f"{self._service_url(project_id, service_id)}/?action={action}"
        return service(await self._request("POST", url, body=body))

    def _project_url(self, project_id: str) -> str:
        return f"{self._base}/projects/{quote(project_id, safe='')}"

    def _service_url(self, project_id: str, service_id: str) -> str:
        return f"{self._project_url(project_id)}/services/{quote(service_id, safe='')}"

    def _host_url(self, project_id: str, host_id: str) -> str:
        return f"{self._project_url(project_id)}/hosts/{quote(host_id, safe='')}"

    async def _request(self, method: str, url: str, *, body: Mapping[str, Any] | None = None) -> Any:
        """Send one request; return the decoded JSON of a 2xx answer or raise a ``CattleError``."""
        try:
            data = await self._exchange(method, url, body)
        except CattleError as e:
            self.reachability.failed(e)
            raise
        self.reachability.succeeded()
        return data

    async def _exchange(self, method: str, url: str, body: Mapping[str, Any] | None) -> Any:
        where = f"{method} {URL(url).path}"
        status = 0
        try:
            async with self._session.request(
                method, url, json=body, headers=self._headers, timeout=self._timeout
            ) as response:
                status = response.status
                text = await response.text(errors="replace")
                retry_after = parse_retry_after(response.headers.get("Retry-After"), now=self._clock())
        except TimeoutError as e:
            raise CattleUnavailable(f"{where}: no answer within {self._timeout.total:g}s") from e
        except aiohttp.ClientError as e:
            raise CattleUnavailable(f"{where}: {type(e).__name__}: {e}") from e
        finally:
            self._count(method, status)
        logger.debug("%s -> %d", where, status)
        if status >= 300:
            raise error_for(where, status, text, retry_after)
        try:
            return json.loads(text)
        except ValueError as e:
            raise CattleProtocolError(
                f"{where}: answer is not JSON: {truncate(text)!r}", status=status
            ) from e

    def _count(self, method: str, status: int) -> None:
        if self._metrics is not None:
            self._metrics.cattle_requests.labels(method=method, code=str(status or 0)).inc()


def error_for(where: str, status: int, text: str, retry_after: float | None) -> CattleError:
    """The error for a non-2xx answer, with Cattle's code and message when the body is its error JSON."""
    code, message = "", truncate(text)
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        body = cast(CattleErrorBody, body)
        code = str(body.get("code") or "")
        message = truncate(str(body.get("message") or body.get("detail") or code or text))
    kind: type[CattleError]
    if status >= 500:
        kind = CattleUnavailable
    elif status in (409, 422):
        kind = CattleBusy
    elif status in (401, 403):
        kind = CattleUnauthorized
    elif status == 404:
        kind = CattleNotFound
    elif status >= 400:
        kind = CattleRequestError
    else:  # 3xx: Cattle doesn't redirect API calls; something else answered
        kind = CattleProtocolError
    summary = f"{where}: {status} {code}: {message}" if code else f"{where}: {status}: {message}"
    return kind(summary, status=status, code=code, retry_after=retry_after)


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Retry-After as seconds from now: either delta-seconds or an HTTP date. Unparseable -> None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT by definition
        return None
    return max(0.0, when.timestamp() - now)


def resource(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise CattleProtocolError(f"expected a Cattle {what} resource, got {truncate(repr(data))}")
    return cast(dict[str, Any], data)


def service(data: Any) -> CattleService:
    checked = resource(data, "service")
    scale = checked.get("scale")
    if scale is not None and (not isinstance(scale, int) or isinstance(scale, bool)):
        raise CattleProtocolError(f"service {checked['id']} has a non-integer scale {scale!r}")
    return cast(CattleService, checked)


def host(data: Any) -> CattleHost:
    checked = resource(data, "host")
    labels = checked.get("labels")
    if labels is not None and not isinstance(labels, dict):
        raise CattleProtocolError(f"host {checked['id']} has malformed labels {truncate(repr(labels))}")
    return cast(CattleHost, checked)


def collection(data: Any) -> CattleCollection:
    if (
        not isinstance(data, dict)
        or data.get("type") != "collection"
        or not isinstance(data.get("data"), list)
    ):
        raise CattleProtocolError(f"expected a Cattle collection, got {truncate(repr(data))}")
    pagination = data.get("pagination")
    if pagination is not None and not isinstance(pagination, dict):
        raise CattleProtocolError(f"collection has a malformed pagination {truncate(repr(pagination))}")
    return cast(CattleCollection, data)


def basic_auth(user: str, password: str) -> str:
    # Built by hand: aiohttp.BasicAuth is deprecated in 3.14 and encode_basic_auth is missing before it.
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def truncate(text: str, limit: int = MAX_BODY_IN_ERROR) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"
