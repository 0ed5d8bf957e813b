"""The receivers API in Rancher's shape: what the Rancher UI's Webhooks page, curl scripts and the Rancher
Pipeline use to create, list, read and delete receivers.

Routes, bodies, answers and status codes are Rancher 1.6's webhook service's (its router and handlers):

- ``GET /v1-webhooks?projectId=`` (the version root, with the ``receivers`` and ``schemas`` links),
  ``GET /v1-webhooks/schemas`` and ``/v1-webhooks/schemas/{id}``;
- ``POST /v1-webhooks/receivers?projectId=`` with ``{name, driver, <driver>Config}``, answered 200 with
  the receiver (``id``, ``url``, ``state``, ``driver``, ``name``, its config);
- ``GET /v1-webhooks/receivers?projectId=`` (a collection), ``GET`` and ``DELETE
  /v1-webhooks/receivers/{id}?projectId=`` (DELETE answers 204);
- every path also with a trailing slash; every error in Rancher's body, whatever its status:
  ``{"type": "error", "links": {...}, "actions": {}, "statusCode": 400, "status": "Server Error",
  "message": ...}`` (the listener's own error shape is for the trigger endpoint).

Who may do what is Cattle's to say, as it was Rancher's. The caller presents its Rancher API key (HTTP
Basic) and, for every request on receivers, the API asks Cattle with that very key for the project's
schemas (``CattleClient.may_change_project``): a key Cattle does not know is 401; one whose schemas do
not offer changing services and hosts (read-only and restricted users) is 405 on create and delete,
and never sees a trigger URL, since the URL is the power to act (Rancher hid it from these roles too).
Nothing about a key is cached, so a revoked key stops working at its next request. A request without
credentials is sent to Cattle without them: a Cattle with access control on refuses it.

Where a created receiver is kept is the mode's (``controller.receivers.api_store.ApiReceiverStore``):
a Receiver manifest in the folder the service manages in ``run``, a Receiver object in the project's
namespace in ``operator`` mode. Either way the answer comes once the receiver set holds the receiver,
so its trigger URL works when the caller gets it, and a delete answers once the receiver set has
dropped it, so the URL is revoked by then. The body is checked as a manifest would be (schema and
driver) before anything is written, and bounded like the trigger endpoint's: ``max_body_bytes``,
``body_timeout``, and the manifests' nesting depth. A config in Rancher's shape becomes the driver's
as ``import-rancher`` converts what Rancher stored (``controller.rancher.convert``): the body
Rancher's API took is what it stored. The project comes from the query.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from controller.cattle.client import CattleClient
from controller.cattle.errors import CattleError, CattleNotFound, CattleUnauthorized
from controller.drivers.contract import DriverSet
from controller.errors import WebhookServiceError
from controller.rancher.convert import CONVERTERS, Unconvertible
from controller.receiver_set import ReceiverSet
from controller.receivers.api_store import (
    ApiReceiver,
    ApiReceiverStore,
    ApiStoreError,
    ApiStoreUnavailable,
    DuplicateReceiver,
    NotSettled,
    ProjectUnmapped,
    ReceiverRejected,
    is_project_id,
    manifest,
    receiver_id_for,
)
from controller.receivers.loader import check_object
from controller.receivers.schema import ReceiverSchema
from controller.receivers.yamlsafe import MAX_DEPTH
from controller.settings import Settings

logger = logging.getLogger(__name__)

ROOT = "/v1-webhooks"
CHALLENGE = 'Basic realm="Enter API access key and secret key as username and password"'
JSON_TYPES = {
    "string": "string",
    "integer": "int",
    "number": "float",
    "boolean": "boolean",
    "object": "map[string]",
}


class ApiError(WebhookServiceError):
    """An answer in Rancher's error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ReceiversApiDeps:
    settings: Settings
    receivers: ApiReceiverStore
    receiver_set: ReceiverSet
    drivers: DriverSet
    schema: ReceiverSchema
    session: aiohttp.ClientSession
    cattle_url: str | None  # None: no Cattle to ask, so every request on receivers is 503


View = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_receivers_api(app: web.Application, deps: ReceiversApiDeps) -> None:
    api = ReceiversApi(deps)
    routes: list[tuple[str, str, View]] = [
        ("GET", "", api.version),
        ("GET", "/schemas", api.schemas),
        ("GET", "/schemas/{id}", api.schema),
        ("POST", "/receivers", api.create),
        ("GET", "/receivers", api.collection),
        ("GET", "/receivers/{id}", api.get),
        ("DELETE", "/receivers/{id}", api.delete),
    ]
    for method, path, view in routes:
        for variant in (ROOT + path, ROOT + path + "/"):
            app.router.add_route(method, variant, rancher_errors(view))


class ReceiversApi:
    def __init__(self, deps: ReceiversApiDeps) -> None:
        self.deps = deps
        self._changing = asyncio.Lock()  # one create or delete at a time: name checks, then the write

    async def version(self, request: web.Request) -> web.Response:
        project_id = _project_id(request)
        base = _api_base(request)
        links = {
            "receivers": f"{base}/receivers?projectId={project_id}",
            "schemas": f"{base}/schemas?projectId={project_id}",
            "self": f"{base}?projectId={project_id}",
        }
        return web.json_response({"type": "apiVersion", "links": links, "actions": {}})

    async def schemas(self, request: web.Request) -> web.Response:
        base = _api_base(request)
        data = [render_schema(schema_id, fields, base) for schema_id, fields in self._schema_fields().items()]
        return web.json_response(
            {
                "type": "collection",
                "resourceType": "schema",
                "links": {"self": str(request.url)},
                "data": data,
            }
        )

    async def schema(self, request: web.Request) -> web.Response:
        fields = self._schema_fields().get(request.match_info["id"])
        if fields is None:
            raise ApiError(404, f"Schema {request.match_info['id']} not found")
        return web.json_response(render_schema(request.match_info["id"], fields, _api_base(request)))

    async def create(self, request: web.Request) -> web.Response:
        project_id = _project_id(request)
        if not await self._may_change(request, project_id):
            raise ApiError(405, "user doesn't have the access to create webhook")
        if request.content_type != "application/json":
            raise ApiError(400, "Content-Type must be supplied as header. Only application/json is supported")
        body = await self._read_json(request)
        name, driver = body.get("name"), body.get("driver")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "Name not provided")
        if not isinstance(driver, str) or not driver:
            raise ApiError(400, "Driver not provided")
        if driver not in self.deps.drivers:
            raise ApiError(400, f"Invalid driver {driver}")
        receiver_id = receiver_id_for(name)
        spec = self._spec(body, driver, project_id, receiver_id, name)
        duplicate = f"Cannot have duplicate webhook name, webhook {name} already exists"
        async with self._changing:
            with store_errors(f"Failed to create webhook {name}"):
                taken = await self.deps.receivers.in_project(project_id)
                if any(r.name == name or r.id == receiver_id for r in taken):
                    raise ApiError(400, duplicate)
                try:
                    stored = await self.deps.receivers.write(project_id, receiver_id, name, spec)
                except DuplicateReceiver as e:
                    raise ApiError(400, duplicate) from e
        logger.info("receiver %s (%s) created through the API", stored.key, driver)
        return web.json_response(await self._render(request, stored, show_url=True))

    async def collection(self, request: web.Request) -> web.Response:
        project_id = _project_id(request)
        show_url = await self._may_change(request, project_id)
        with store_errors("Failed to list webhooks"):
            found = await self.deps.receivers.in_project(project_id)
        data = [await self._render(request, r, show_url=show_url) for r in found]
        links = {"self": f"{_api_base(request)}/receivers?projectId={project_id}"}
        return web.json_response(
            {"type": "collection", "resourceType": "receiver", "links": links, "data": data}
        )

    async def get(self, request: web.Request) -> web.Response:
        project_id = _project_id(request)
        show_url = await self._may_change(request, project_id)
        receiver = await self._found(request, project_id)
        return web.json_response(await self._render(request, receiver, show_url=show_url))

    async def delete(self, request: web.Request) -> web.Response:
        project_id = _project_id(request)
        if not await self._may_change(request, project_id):
            raise ApiError(405, "user doesn't have the access to delete webhook")
        async with self._changing:
            receiver = await self._found(request, project_id)
            with store_errors(f"Failed to delete webhook {receiver.name}"):
                await self.deps.receivers.remove(receiver)
        logger.info("receiver %s deleted through the API", receiver.key)
        return web.Response(status=204)

    async def _found(self, request: web.Request, project_id: str) -> ApiReceiver:
        with store_errors("Failed to find the webhook"):
            receiver = await self.deps.receivers.get(project_id, request.match_info["id"])
        if receiver is None:
            raise ApiError(404, "Webhook not found")
        return receiver

    def _spec(
        self, body: Mapping[str, Any], driver: str, project_id: str, receiver_id: str, name: str
    ) -> dict[str, Any]:
        """The manifest's spec from Rancher's body, checked as the watcher will check it."""
        config_field = self.deps.drivers[driver].config_field
        given = body.get(config_field)
        if not isinstance(given, dict):
            raise ApiError(400, f"Invalid driver {driver}: {config_field} not provided")
        try:
            config = CONVERTERS.get(driver, as_given)(given, project_id)
        except Unconvertible as e:
            raise ApiError(400, f"Invalid {config_field}: {e}") from e
        spec = {"driver": driver, config_field: config}
        declared = manifest(project_id, receiver_id, name, spec)
        _, problems = check_object(declared, self.deps.drivers, self.deps.schema)
        if problems:
            raise ApiError(
                400, "; ".join(f"{p.path}: {p.message}" if p.path else p.message for p in problems)
            )
        return spec

    async def _may_change(self, request: web.Request, project_id: str) -> bool:
        """Ask Cattle, with the caller's own key, whether it may change the project (see the module doc)."""
        if self.deps.cattle_url is None:
            raise ApiError(503, "No Cattle is configured (--cattle-url) to check API keys with")
        access_key, secret_key = _credentials(request)
        client = CattleClient(
            self.deps.session,
            base_url=self.deps.cattle_url,
            access_key=access_key,
            secret_key=secret_key,
            timeout=self.deps.settings.cattle_timeout,
        )
        try:
            return await client.may_change_project(project_id)
        except CattleUnauthorized as e:
            raise ApiError(e.status, "Unauthorized" if e.status == 401 else "Forbidden") from e
        except CattleNotFound as e:
            raise ApiError(404, f"Project {project_id} not found") from e
        except CattleError as e:
            logger.warning("could not ask Cattle about an API key: %s", e)
            raise ApiError(
                503, "Cattle could not be asked whether this key may do this; retry shortly"
            ) from e

    async def _read_json(self, request: web.Request) -> dict[str, Any]:
        limit = self.deps.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise ApiError(413, f"The body is larger than {limit} bytes")
        try:
            async with asyncio.timeout(self.deps.settings.body_timeout):
                raw = await request.read()
        except TimeoutError as e:
            raise ApiError(408, "The body did not arrive in time") from e
        except web.HTTPRequestEntityTooLarge as e:
            raise ApiError(413, f"The body is larger than {limit} bytes") from e
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as e:
            raise ApiError(400, "Bad request body: not JSON") from e
        if not isinstance(data, dict):
            raise ApiError(400, "Bad request body: not a JSON object")
        if depth(data) > MAX_DEPTH:
            raise ApiError(400, f"Bad request body: nested deeper than {MAX_DEPTH}")
        return data

    async def _render(self, request: web.Request, receiver: ApiReceiver, *, show_url: bool) -> dict[str, Any]:
        active = self.deps.receiver_set.get(receiver.key)
        base = _api_base(request)
        body: dict[str, Any] = {
            "id": receiver.id,
            "type": "receiver",
            "links": {"self": f"{base}/receivers/{receiver.id}?projectId={receiver.project_id}"},
            "actions": {},
            "name": receiver.name,
            "driver": receiver.driver,
            "state": "active" if active is not None else "inactive",
            f"{receiver.driver}Config": dict(receiver.config),
        }
        if show_url and active is not None:
            with store_errors("Failed to read the webhook's URL"):
                url = await self.deps.receivers.url(receiver, active)
            if url is not None:
                body["url"] = url
        return body

    def _schema_fields(self) -> dict[str, dict[str, Any]]:
        """Rancher's schemas of this API: the receiver, each driver's config, and the API's own types."""
        drivers = self.deps.drivers
        receiver: dict[str, Any] = {
            "name": {"type": "string", "create": True, "required": True},
            "driver": {"type": "enum", "create": True, "required": True, "options": sorted(drivers)},
            "url": {"type": "string"},
            "state": {"type": "string"},
        }
        for name, driver in sorted(drivers.items()):
            receiver[driver.config_field] = {"type": name, "create": True}
        fields: dict[str, dict[str, Any]] = {"receiver": receiver}
        for name, driver in sorted(drivers.items()):
            properties = driver.config_schema.get("properties", {})
            fields[name] = {
                field: {"type": JSON_TYPES.get(str(prop.get("type")), "string"), "create": True}
                for field, prop in properties.items()
            }
        fields.update({"apiVersion": {}, "schema": {}, "error": {}})
        return fields


def render_schema(schema_id: str, fields: Mapping[str, Any], base: str) -> dict[str, Any]:
    plural = f"{schema_id}s"
    is_receiver, is_config = (
        schema_id == "receiver",
        schema_id not in ("receiver", "apiVersion", "schema", "error"),
    )
    collection_methods = ["GET", "POST"] if is_receiver else [] if is_config else ["GET"]
    links = {"self": f"{base}/schemas/{schema_id}"}
    if collection_methods:
        links["collection"] = f"{base}/{plural}"
    return {
        "id": schema_id,
        "type": "schema",
        "links": links,
        "actions": {},
        "pluralName": plural,
        "resourceMethods": ["GET", "DELETE"] if is_receiver else ["GET"],
        "resourceFields": dict(fields),
        "collectionMethods": collection_methods,
    }


@contextlib.contextmanager
def store_errors(failed: str) -> Iterator[None]:
    """The store's errors as the API's answers. ``failed`` says what failed, before the store's own
    words where those need it ("Failed to create webhook web-up: it did not load; ...")."""
    try:
        yield
    except ProjectUnmapped as e:
        raise ApiError(400, str(e)) from e
    except ReceiverRejected as e:
        raise ApiError(500, f"{failed}: {e}") from e
    except NotSettled as e:
        raise ApiError(504, f"{failed}: {e}") from e
    except ApiStoreUnavailable as e:
        logger.warning("%s: %s", failed, e)
        raise ApiError(503, f"{failed}: the receivers' store is unavailable; retry shortly") from e
    except ApiStoreError as e:
        raise ApiError(500, f"{failed}: {e}") from e


def as_given(config: Mapping[str, Any], _project_id: str) -> dict[str, Any]:
    """The config of a driver Rancher did not have: in this service's own shape already."""
    return {k: v for k, v in config.items() if k != "type"}


def depth(value: Any) -> int:
    """How deeply ``value`` nests (a scalar: 0), without recursion."""
    deepest, pending = 0, [(value, 0)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level + 1)
            pending.extend((child, level + 1) for child in item)
    return deepest


def rancher_errors(view: View) -> View:
    """Errors of a view as Rancher's error body (see the module docstring); our own bugs as a 500."""

    async def answered(request: web.Request) -> web.StreamResponse:
        try:
            return await view(request)
        except ApiError as e:
            return error_response(request, e.status, e.message)
        except Exception:
            logger.exception("unexpected error answering %s %s", request.method, request.path)
            return error_response(request, 500, "The service failed to answer; see its log")

    return answered


def error_response(request: web.Request, status: int, message: str) -> web.Response:
    body = {
        "type": "error",
        "links": {"self": str(request.url)},
        "actions": {},
        "statusCode": status,
        "status": "Server Error",
        "message": message,
    }
    response = web.json_response(body, status=status)
    if status == 401 and request.headers.get("X-API-No-Challenge", "").lower() != "true":
        response.headers["WWW-Authenticate"] = CHALLENGE
    return response


def _project_id(request: web.Request) -> str:
    project_id = request.query.get("projectId", "")
    if not project_id:
        raise ApiError(400, "projectId must be supplied as query parameter")
    if not is_project_id(project_id):
        raise ApiError(400, f"projectId {project_id[:64]!r} is not a Cattle project id")
    return project_id


def _api_base(request: web.Request) -> str:
    return f"{request.url.origin()}{ROOT}"


def _credentials(request: web.Request) -> tuple[str | None, str | None]:
    """The caller's Rancher API key from HTTP Basic; (None, None) without one. Malformed: 401."""
    header = request.headers.get("Authorization", "")
    if not header:
        return None, None
    scheme, _, encoded = header.partition(" ")
    try:
        if scheme.lower() != "basic":
            raise ValueError(scheme)
        access_key, sep, secret_key = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (ValueError, binascii.Error, UnicodeDecodeError) as e:
        raise ApiError(401, "Unauthorized: send the API key as HTTP Basic credentials") from e
    if not sep or not access_key:
        raise ApiError(401, "Unauthorized: send the API key as HTTP Basic credentials")
    return access_key, secret_key
