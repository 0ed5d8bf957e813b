"""The sandbox: an in-process emulation of the part of Cattle's API the Cattle drivers use.

It answers like Cattle (Rancher 1.x) so the client cannot tell the difference: the
same URLs under ``/v1`` and ``/v2-beta``, HTTP Basic auth with Cattle's challenge, Cattle's error body,
collections with ``marker`` pagination and ``field_modifier`` filters, partial-update PUTs that answer
with the whole resource in ``updating-active``, and 409 for a service busy in another process. Hosts:
lists and reads, ``POST hosts`` (a clone with exactly one ``<driver>Config`` or a ``hostTemplateId``,
answered 201 in ``requested``) and ``POST externalhostevents`` (``host.evacuate``, optionally ``deleteHost``).
Generic objects (``GET .../genericobjects``, filtered by ``kind``/``key`` like any collection) are
read-only: they come from the seed, as Rancher's webhook service left them for ``import-rancher``.
Service actions (``POST .../services/{id}/?action=upgrade``, ``finishupgrade``, ``rollback``, ...)
answer 202 with the service already transitioning, or 422 ``ActionNotAvailable`` when its state
doesn't offer the action; the ``launchConfig``, ``secondaryLaunchConfigs`` and ``upgrade`` fields show
an in-service upgrade the way Cattle does.

It also models Rancher 1.x's service proxy (what the forwardPost driver uses): ``POST
/r/projects/{projectId}/{serviceName}:{port}/{path}`` beside the API versions, with the same auth. The
service gets the body, the query and the headers, except hop-by-hop ones, ``Host``, ``Content-Length``
and ``Authorization`` (the caller's Cattle credentials, which are Cattle's business, not the
service's). A service seeded with ``upstream: http://host:port`` is forwarded to for real; any other
answers as an echo upstream: 200 with ``{"method", "path", "query" (pairs), "contentType", "body"
(text), "headers" (pairs, as the service got them)}``. An unknown service name is 404, a port outside
1..65535 is 422.

Design decisions:

- The live world is in ``controller.sandbox.state``; transitions happen lazily, by the clock.
- The live world (``SandboxState``) is a plain object on the app under ``SANDBOX_STATE``, so tests
  read and adjust it directly instead of going through HTTP.
- Domain refusals raise ``Refusal``; one middleware turns them (and aiohttp's own 404/405) into
  Cattle's error body and adds the headers every answer carries, including ``X-Sandbox: true``.
- Who is asking: the options' key (the service's own) is an owner; a seeded key (``keys``) has its
  role; a request without credentials is an owner while the options name no key (Rancher with access
  control off), and so is any request while neither the options nor the seed name a key. Anything
  else is 401. The role shapes the schemas served (``GET /schemas``, also
  project-scoped) and refuses, 405, the writes its schemas do not offer (``controller.sandbox.state``).
- ``fail_rate`` draws from a seeded ``random.Random`` kept on the app, so failing runs repeat.
- ``fail_upgrade_of`` names services whose upgrades fail (``upgrading``, transitioning ``error``),
  so a test can watch a driver notice the failure and roll back.
- ``fail_host_create`` fails chosen host creations by their call number (the 3rd POST of a host...),
  once each, so a test can stage a partial failure exactly and watch the retry.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import fnmatch
import hmac
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Set
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from controller.http_headers import end_to_end
from controller.sandbox.seed import SandboxSeed, load_seed
from controller.sandbox.state import (
    ACTIONS_BY_STATE,
    ADMIN_ROLE,
    COLLECTIONS,
    HOST_ACTIONS_BY_STATE,
    SCHEMA_IDS,
    UPDATABLE_EXTRA,
    Refusal,
    SandboxGenericObject,
    SandboxHost,
    SandboxProject,
    SandboxService,
    SandboxState,
    schema_methods,
)

__all__ = ["SANDBOX_STATE", "SandboxOptions", "SandboxState", "load_seed", "make_sandbox_app", "run_sandbox"]

logger = logging.getLogger(__name__)

BANNER = "SANDBOX: this is an emulated Cattle API, not Rancher"
CHALLENGE = 'Basic realm="Enter API access key and secret key as username and password"'
VERSIONS = "v1|v2-beta"
ADMIN_ACCOUNT = "1a1"  # X-API-Account-Id of answers that are not scoped to a project
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
RESERVED_QUERY = frozenset({"limit", "marker", "sort", "order", "include", "_"})
MODIFIERS = frozenset({"eq", "ne", "lt", "lte", "gt", "gte", "prefix", "like", "notlike", "null", "notnull"})
UNPROXIED_HEADERS = frozenset({"host", "content-length", "authorization"})  # besides hop-by-hop ones


@dataclass(frozen=True)
class SandboxOptions:
    access_key: str | None = None
    secret_key: str | None = None
    latency_ms: int = 0  # added to every answer
    fail_rate: float = 0.0  # share of requests answered 503 before anything else happens
    transition_ms: int = 100  # how long a scale update stays "updating-active"
    seed: int | None = None  # random seed for fail_rate, for repeatable runs
    fail_host_create: Set[int] = frozenset()  # 1-based POST-of-a-host calls that fail (once each)
    fail_host_create_status: int = 500  # how they fail: 500 (ServiceUnavailable-like) or 422
    fail_upgrade_of: Set[str] = frozenset()  # service ids whose upgrades end in transitioning "error"


SANDBOX_STATE = web.AppKey("sandbox_state", SandboxState)
SANDBOX_OPTIONS = web.AppKey("sandbox_options", SandboxOptions)
SANDBOX_RNG = web.AppKey("sandbox_rng", random.Random)


def make_sandbox_app(
    seed: SandboxSeed | None, options: SandboxOptions, *, clock: Callable[[], float] = time.time
) -> web.Application:
    app = web.Application(middlewares=[cattle_edge])
    app[SANDBOX_STATE] = SandboxState(seed, transition_ms=options.transition_ms, clock=clock)
    app[SANDBOX_OPTIONS] = options
    app[SANDBOX_RNG] = random.Random(options.seed)
    app.on_startup.append(log_banner)
    v = f"/{{version:{VERSIONS}}}"
    app.router.add_get(v, api_root)
    app.router.add_get(v + "/", api_root)
    app.router.add_get(v + "/schemas", schemas)
    app.router.add_get(v + "/projects/{pid}/schemas", schemas)
    app.router.add_get(v + "/projects", list_projects)
    app.router.add_get(v + "/projects/{pid}", get_project)
    for scope in (v + "/projects/{pid}", v):  # project-scoped, or scoped by the X-API-Project-Id header
        app.router.add_get(scope + "/services", list_services)
        app.router.add_get(scope + "/services/{sid}", get_service)
        app.router.add_put(scope + "/services/{sid}", put_service)
        app.router.add_post(scope + "/services/{sid}", post_service_action)
        app.router.add_post(scope + "/services/{sid}/", post_service_action)
        app.router.add_get(scope + "/hosts", list_hosts)
        app.router.add_post(scope + "/hosts", post_host)
        app.router.add_get(scope + "/hosts/{hid}", get_host)
        app.router.add_post(scope + "/externalhostevents", post_external_host_event)
        app.router.add_get(scope + "/genericobjects", list_generic_objects)
    app.router.add_post("/r/projects/{pid}/{endpoint}", proxy_post)
    app.router.add_post("/r/projects/{pid}/{endpoint}/{path:.*}", proxy_post)
    return app


async def run_sandbox(
    host: str,
    port: int,
    seed: SandboxSeed | None,
    options: SandboxOptions,
    *,
    clock: Callable[[], float] = time.time,
) -> web.AppRunner:
    """Start the sandbox on host:port (0 picks a free port; see ``runner.addresses``). Caller cleans up."""
    runner = web.AppRunner(make_sandbox_app(seed, options, clock=clock))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    logger.info("sandbox listening on %s", runner.addresses)
    return runner


async def log_banner(app: web.Application) -> None:
    state = app[SANDBOX_STATE]
    services = sum(len(p.services) for p in state.projects.values())
    hosts = sum(len(p.hosts) for p in state.projects.values())
    logger.warning("%s (%d projects, %d services, %d hosts)", BANNER, len(state.projects), services, hosts)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def cattle_edge(request: web.Request, handler: Handler) -> web.StreamResponse:
    options = request.app[SANDBOX_OPTIONS]
    if options.latency_ms:
        await asyncio.sleep(options.latency_ms / 1000)
    response: web.StreamResponse
    try:
        if options.fail_rate and request.app[SANDBOX_RNG].random() < options.fail_rate:
            raise Refusal(503, "ServiceUnavailable", "sandbox: injected failure (fail_rate)")
        check_role_allows(request, caller_role(request))
        response = await handler(request)
    except Refusal as e:
        response = error_response(e, request)
    except web.HTTPException as e:  # the router's own 404 / 405
        code = "MethodNotAllowed" if e.status == 405 else "NotFound" if e.status == 404 else e.reason
        response = error_response(Refusal(e.status, code, e.reason), request)
    version = request.match_info.get("version", "v2-beta")
    response.headers["X-API-Schemas"] = f"{request.url.origin()}/{version}/schemas"
    response.headers["X-API-Account-Id"] = scoped_project_id(request) or ADMIN_ACCOUNT
    response.headers["X-Sandbox"] = "true"
    return response


def caller_role(request: web.Request) -> str:
    """The role of whoever sent the request (see the module docstring); 401 for unknown credentials."""
    options, keys = request.app[SANDBOX_OPTIONS], request.app[SANDBOX_STATE].keys
    credentials = basic_credentials(request.headers.get("Authorization", ""))
    if not options.access_key and (not credentials or not keys):
        return ADMIN_ROLE
    if options.access_key:
        expected = f"{options.access_key}:{options.secret_key or ''}".encode()
        if hmac.compare_digest(credentials, expected):
            return ADMIN_ROLE
    access, _, secret = credentials.partition(b":")
    key = keys.get(access.decode(errors="replace"))
    if key is not None and hmac.compare_digest(secret, key.secret_key.encode()):
        return key.role
    raise Refusal(401, "Unauthorized", "Unauthorized")


def check_role_allows(request: web.Request, role: str) -> None:
    """405 for a write the role's schema of that collection does not offer."""
    if request.method in ("GET", "HEAD"):
        return
    segments = [s for s in request.path.split("/") if s]
    if segments[:1] == ["r"]:
        return  # the service proxy: reaching a service is not changing one
    schema_id = next((COLLECTIONS[s] for s in reversed(segments) if s in COLLECTIONS), None)
    if schema_id is None:
        return
    collection_methods, resource_methods = schema_methods(role, schema_id)
    is_collection = segments[-1] in COLLECTIONS
    if request.method not in (collection_methods if is_collection else (*resource_methods, "POST")):
        raise Refusal(405, "MethodNotAllowed", f"role {role} may not {request.method} {schema_id}")
    if not is_collection and request.method == "POST" and "PUT" not in resource_methods:
        raise Refusal(405, "MethodNotAllowed", f"role {role} may not act on {schema_id}")


def basic_credentials(header: str) -> bytes:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return b""
    try:
        return base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return b""


def error_response(error: Refusal, request: web.Request) -> web.Response:
    body = {
        "id": uuid.uuid4().hex, "type": "error", "status": error.status, "code": error.code,
        "message": error.message, "detail": None, "fieldName": error.field_name,
    }  # fmt: skip
    response = web.json_response(body, status=error.status)
    if error.status == 401 and request.headers.get("X-API-No-Challenge", "").lower() != "true":
        response.headers["WWW-Authenticate"] = CHALLENGE
    return response


def scoped_project_id(request: web.Request) -> str | None:
    return request.match_info.get("pid") or request.headers.get("X-API-Project-Id")


def project_in_scope(request: web.Request) -> SandboxProject:
    """The project of a request: from the path, else the header; an unscoped request with a single
    project uses it, like an environment API key that belongs to one project."""
    state = request.app[SANDBOX_STATE]
    project_id = scoped_project_id(request)
    if project_id is None:
        if len(state.projects) != 1:
            raise Refusal(404, "NotFound", "no project in scope: use /projects/{id}/ or X-API-Project-Id")
        project_id = next(iter(state.projects))
    project = state.project(project_id)
    if project.state != "active":
        raise Refusal(403, "Forbidden", f"project {project_id} is {project.state}")
    return project


def api_base(request: web.Request) -> str:
    return f"{request.url.origin()}/{request.match_info['version']}"


async def api_root(request: web.Request) -> web.Response:
    base = api_base(request)
    links = {
        "self": base,
        "schemas": f"{base}/schemas",
        "projects": f"{base}/projects",
        "services": f"{base}/services",
        "hosts": f"{base}/hosts",
    }
    return web.json_response(
        {"id": request.match_info["version"], "type": "apiVersion", "links": links, "actions": {}}
    )


async def schemas(request: web.Request) -> web.Response:
    """The schemas the caller's role is served: what it may do shows in their methods."""
    if "pid" in request.match_info:
        project_in_scope(request)
    base, role = api_base(request), caller_role(request)
    items = []
    for schema_id in SCHEMA_IDS:
        collection_methods, resource_methods = schema_methods(role, schema_id)
        items.append(
            {
                "id": schema_id,
                "type": "schema",
                "links": {"self": f"{base}/schemas/{schema_id.lower()}"},
                "collectionMethods": list(collection_methods),
                "resourceMethods": list(resource_methods),
            }
        )
    return web.json_response(collection_body(request, items, "schema"))


async def list_projects(request: web.Request) -> web.Response:
    state, base = request.app[SANDBOX_STATE], api_base(request)
    items = [render_project(p, base) for p in state.projects.values() if p.state != "removed"]
    return web.json_response(collection_body(request, items, "project"))


async def get_project(request: web.Request) -> web.Response:
    return web.json_response(render_project(project_in_scope(request), api_base(request)))


async def list_services(request: web.Request) -> web.Response:
    project = project_in_scope(request)
    version, base = request.match_info["version"], api_base(request)
    items = [render_service(s, base, version) for s in request.app[SANDBOX_STATE].services(project.id)]
    return web.json_response(collection_body(request, items, "service"))


async def get_service(request: web.Request) -> web.Response:
    project = project_in_scope(request)
    service = request.app[SANDBOX_STATE].service(project.id, request.match_info["sid"])
    return web.json_response(render_service(service, api_base(request), request.match_info["version"]))


async def put_service(request: web.Request) -> web.Response:
    project = project_in_scope(request)
    state = request.app[SANDBOX_STATE]
    state.service(project.id, request.match_info["sid"])  # 404 before looking at the body, as Cattle does
    try:
        changes = json.loads(await request.read())
    except ValueError:
        raise Refusal(400, "InvalidBodyContent", "the body is not valid JSON") from None
    if not isinstance(changes, dict):
        raise Refusal(400, "InvalidBodyContent", "the body must be a JSON object")
    service = state.update(project.id, request.match_info["sid"], changes)
    return web.json_response(render_service(service, api_base(request), request.match_info["version"]))


async def post_service_action(request: web.Request) -> web.Response:
    """``POST .../services/{id}/?action=name``: a process-backed action, answered 202 while it runs."""
    project = project_in_scope(request)
    state, options = request.app[SANDBOX_STATE], request.app[SANDBOX_OPTIONS]
    service_id = request.match_info["sid"]
    state.service(project.id, service_id)  # 404 first, as Cattle does
    action = request.query.get("action")
    if not action:
        raise Refusal(405, "MethodNotAllowed", "POST to a service needs ?action=")
    body = await json_object(request) if await request.read() else {}
    failing = service_id in options.fail_upgrade_of
    service = state.act(project.id, service_id, action, body, failing=failing)
    rendered = render_service(service, api_base(request), request.match_info["version"])
    return web.json_response(rendered, status=202)


async def list_hosts(request: web.Request) -> web.Response:
    project = project_in_scope(request)
    items = [render_host(h, api_base(request)) for h in request.app[SANDBOX_STATE].hosts(project.id)]
    return web.json_response(collection_body(request, items, "host"))


async def get_host(request: web.Request) -> web.Response:
    project = project_in_scope(request)
    host = request.app[SANDBOX_STATE].host(project.id, request.match_info["hid"])
    return web.json_response(render_host(host, api_base(request)))


async def list_generic_objects(request: web.Request) -> web.Response:
    """``?kind=webhookReceiver`` and ``?key=...`` filter like any field, as Cattle's collections do."""
    project = project_in_scope(request)
    state, base = request.app[SANDBOX_STATE], api_base(request)
    items = [render_generic_object(g, base) for g in state.generic_objects(project.id)]
    return web.json_response(collection_body(request, items, "genericObject"))


async def post_host(request: web.Request) -> web.Response:
    project = project_in_scope(request)
    state, options = request.app[SANDBOX_STATE], request.app[SANDBOX_OPTIONS]
    body = await json_object(request)
    state.host_create_calls += 1
    if state.host_create_calls in options.fail_host_create:
        status = options.fail_host_create_status
        code = "InvalidState" if status == 422 else "ServiceUnavailable"
        raise Refusal(status, code, f"sandbox: injected failure of host create #{state.host_create_calls}")
    host = state.create_host(project.id, body)
    return web.json_response(render_host(host, api_base(request)), status=201)


async def post_external_host_event(request: web.Request) -> web.Response:
    project = project_in_scope(request)
    body = await json_object(request)
    if body.get("eventType") != "host.evacuate":
        raise Refusal(422, "InvalidOption", "eventType must be host.evacuate", field_name="eventType")
    host_id = body.get("hostId")
    if not isinstance(host_id, str) or not host_id:
        raise Refusal(422, "MissingRequired", "hostId is required", field_name="hostId")
    event = request.app[SANDBOX_STATE].evacuate_host(
        project.id, host_id, delete=body.get("deleteHost") is True
    )
    self_url = f"{api_base(request)}/projects/{project.id}/externalhostevents/{event['id']}"
    rendered = {
        "id": event["id"], "type": "externalHostEvent", "kind": "externalHostEvent",
        "baseType": "externalEvent", "eventType": "host.evacuate", "hostId": host_id,
        "deleteHost": event["deleteHost"], "hostLabel": None, "accountId": project.id,
        "state": "requested", "transitioning": "yes",
        **timestamps(event["created"]), "links": {"self": self_url}, "actions": {},
    }  # fmt: skip
    return web.json_response(rendered, status=201)


async def proxy_post(request: web.Request) -> web.Response:
    """Rancher's service proxy: POST to ``{serviceName}:{port}`` of the project; answer as upstream did."""
    project = project_in_scope(request)
    name, _, port_text = request.match_info["endpoint"].rpartition(":")
    port = int(port_text) if port_text.isdigit() else 0
    if not name or not 1 <= port <= 65535:
        raise Refusal(422, "InvalidOption", "expected {serviceName}:{port} with a port in 1..65535")
    service = request.app[SANDBOX_STATE].service_named(project.id, name)
    path = "/" + request.match_info.get("path", "")
    body = await request.read()
    headers = [
        (name, value)
        for name, value in end_to_end(request.headers.items())
        if name.lower() not in UNPROXIED_HEADERS
    ]
    if service.upstream is None:
        echo = {
            "method": request.method,
            "path": path,
            "query": [[k, v] for k, v in request.query.items()],
            "contentType": request.headers.get("Content-Type", ""),
            "body": body.decode("utf-8", errors="replace"),
            "headers": [[name, value] for name, value in headers],
        }
        return web.json_response(echo)
    url = f"{service.upstream}{path}"
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                url, params=list(request.query.items()), data=body, headers=CIMultiDict(headers)
            ) as upstream,
        ):
            answer = await upstream.read()
            answer_headers = {
                "Content-Type": upstream.headers.get("Content-Type", "application/octet-stream")
            }
            return web.Response(status=upstream.status, body=answer, headers=answer_headers)
    except aiohttp.ClientError as e:
        raise Refusal(502, "BadGateway", f"upstream {service.upstream} of {name}: {e}") from e


async def json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read())
    except ValueError:
        raise Refusal(400, "InvalidBodyContent", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise Refusal(400, "InvalidBodyContent", "the body must be a JSON object")
    return body


def collection_body(request: web.Request, items: list[dict[str, Any]], resource_type: str) -> dict[str, Any]:
    """Filter, sort and page rendered resources the way Cattle's collections do."""
    filters = parse_filters(request, items)
    items = [item for item in items if all(matches(item, f, conditions) for f, conditions in filters.items())]
    sort = request.query.get("sort")
    if sort and items and sort in items[0]:
        items.sort(key=lambda item: str(item.get(sort)), reverse=request.query.get("order") == "desc")
    limit = bounded_int(request.query.get("limit"), DEFAULT_LIMIT, 1, MAX_LIMIT)
    marker = request.query.get("marker", "")
    offset = bounded_int(marker[1:] if marker.startswith("m") else None, 0, 0, len(items))
    partial = offset + limit < len(items)
    next_link = str(request.url.update_query(marker=f"m{offset + limit}")) if partial else None
    return {
        "type": "collection", "resourceType": resource_type, "links": {"self": str(request.url)},
        "createTypes": {}, "actions": {}, "data": items[offset : offset + limit], "sortLinks": {},
        "pagination": {"first": None, "previous": None, "next": next_link, "limit": limit, "total": None,
                       "partial": partial},
        "sort": {"name": sort, "order": request.query.get("order", "asc")} if sort else None,
        "filters": filters, "createDefaults": {},
    }  # fmt: skip


def parse_filters(request: web.Request, items: list[dict[str, Any]]) -> dict[str, list[dict[str, str]]]:
    """``field=value`` and ``field_modifier=value`` on fields the resources have; others are ignored."""
    known = set(items[0]) if items else set()
    filters: dict[str, list[dict[str, str]]] = {}
    for key, value in request.query.items():
        name, _, modifier = key.rpartition("_")
        if not name or modifier not in MODIFIERS:
            name, modifier = key, "eq"
        if key in RESERVED_QUERY or name not in known:
            continue
        filters.setdefault(name, []).append({"modifier": modifier, "value": value})
    return filters


def matches(item: dict[str, Any], name: str, conditions: list[dict[str, str]]) -> bool:
    return all(condition_holds(item.get(name), c["modifier"], c["value"]) for c in conditions)


def condition_holds(actual: Any, modifier: str, wanted: str) -> bool:
    if modifier in ("null", "notnull"):
        return (actual is None) == (modifier == "null")
    text = json.dumps(actual) if isinstance(actual, bool) else "" if actual is None else str(actual)
    if modifier in ("lt", "lte", "gt", "gte"):
        try:
            a, w = float(text), float(wanted)
        except ValueError:
            return False
        return {"lt": a < w, "lte": a <= w, "gt": a > w, "gte": a >= w}[modifier]
    if modifier in ("like", "notlike"):
        found = fnmatch.fnmatchcase(text, wanted.replace("%", "*"))
        return found == (modifier == "like")
    if modifier == "prefix":
        return text.startswith(wanted)
    return (text == wanted) == (modifier == "eq")


def bounded_int(text: str | None, default: int, low: int, high: int) -> int:
    try:
        value = int(text) if text is not None else default
    except ValueError:
        value = default
    return max(low, min(high, value))


def timestamps(epoch: float) -> dict[str, Any]:
    created = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"created": created, "createdTS": int(epoch * 1000)}


def render_project(project: SandboxProject, base: str) -> dict[str, Any]:
    self_url = f"{base}/projects/{project.id}"
    return {
        "id": project.id, "type": "project", "baseType": "account", "kind": "project", "name": project.name,
        "description": None, "state": project.state, "transitioning": "no", "transitioningMessage": None,
        "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox/{project.id}")), "orchestration": "cattle",
        "removed": None, **timestamps(project.created),
        "links": {"self": self_url, "services": f"{self_url}/services", "stacks": f"{self_url}/stacks",
                  "hosts": f"{self_url}/hosts"},
        "actions": {},
    }  # fmt: skip


def render_generic_object(obj: SandboxGenericObject, base: str) -> dict[str, Any]:
    return {
        "id": obj.id, "type": "genericObject", "baseType": "genericObject", "kind": obj.kind,
        "name": obj.name, "key": obj.key, "resourceData": dict(obj.resource_data),
        "accountId": obj.project_id, "description": None, "state": "active", "transitioning": "no",
        "transitioningMessage": None, "uuid": obj.uuid, "removed": None, **timestamps(obj.created),
        "links": {"self": f"{base}/projects/{obj.project_id}/genericobjects/{obj.id}"}, "actions": {},
    }  # fmt: skip


def render_service(service: SandboxService, base: str, version: str) -> dict[str, Any]:
    """The whole resource, null fields included. In /v1 a stack is an "environment"."""
    stack_field, stack_link = ("environmentId", "environment") if version == "v1" else ("stackId", "stack")
    project_url = f"{base}/projects/{service.project_id}"
    self_url = f"{project_url}/services/{service.id}"
    body: dict[str, Any] = {
        "id": service.id, "type": service.kind, "baseType": "service", "kind": service.kind,
        "name": service.name, "description": service.description, "accountId": service.project_id,
        stack_field: service.stack_id, "state": service.state, "healthState": service.health_state,
        "transitioning": service.transitioning,
        "transitioningMessage": transitioning_message(service),
        "transitioningProgress": None, "scale": service.scale, "currentScale": service.current_scale,
        "startOnCreate": True, "assignServiceIpAddress": False, "system": False, "fqdn": None, "vip": None,
        "publicEndpoints": None, "upgrade": render_upgrade(service), "linkedServices": None,
        "instanceIds": [],
        "createIndex": service.create_index, "removed": None, "removeTime": None,
        "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox/{service.project_id}/{service.id}")),
        **timestamps(service.created),
        **dict.fromkeys(UPDATABLE_EXTRA), **service.extra,
        "launchConfig": render_launch_config(service.launch.primary, "launchConfig"),
        "secondaryLaunchConfigs": [
            render_launch_config(c, "secondaryLaunchConfig") for c in service.launch.secondary
        ],
        "links": {"self": self_url, "account": f"{project_url}/accounts/{service.project_id}",
                  stack_link: f"{project_url}/stacks/{service.stack_id}",
                  "instances": f"{self_url}/instances"},
        "actions": {a: f"{self_url}/?action={a}" for a in ACTIONS_BY_STATE.get(service.state, ())},
    }  # fmt: skip
    return body


def transitioning_message(service: SandboxService) -> str | None:
    if service.error is not None:
        return service.error
    return "In Progress" if service.transitioning == "yes" else None


def render_launch_config(config: Mapping[str, Any], kind: str) -> dict[str, Any]:
    return {"type": kind, "kind": "container", "networkMode": "managed", "labels": {}, **config}


def render_upgrade(service: SandboxService) -> dict[str, Any] | None:
    """Cattle's ``upgrade`` field: the running upgrade's strategy, with what it replaced."""
    if service.strategy is None:
        return None
    strategy = {"type": "inServiceUpgradeStrategy", **service.strategy}
    if (previous := service.previous) is not None:
        strategy["previousLaunchConfig"] = render_launch_config(previous.primary, "launchConfig")
        strategy["previousSecondaryLaunchConfigs"] = [
            render_launch_config(c, "secondaryLaunchConfig") for c in previous.secondary
        ]
    return {"type": "serviceUpgrade", "inServiceStrategy": strategy, "toServiceStrategy": None}


def render_host(host: SandboxHost, base: str) -> dict[str, Any]:
    """The whole host, null fields included; a machine-driver host carries its ``<driver>Config`` (null
    when it was made from a host template, which keeps the config)."""
    project_url = f"{base}/projects/{host.project_id}"
    self_url = f"{project_url}/hosts/{host.id}"
    body: dict[str, Any] = {
        "id": host.id, "type": "host", "kind": "host", "baseType": "host", "name": host.name,
        "hostname": host.hostname, "description": None, "accountId": host.project_id,
        "state": host.shown_state, "agentState": host.agent_state, "transitioning": host.transitioning,
        "transitioningMessage": "In Progress" if host.transitioning == "yes" else None,
        "labels": dict(host.labels), "driver": host.driver, "hostTemplateId": host.host_template_id,
        "physicalHostId": None,
        "removed": None, "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox/{host.project_id}/{host.id}")),
        **timestamps(host.created), **host.extra,
        "links": {"self": self_url, "account": f"{project_url}/accounts/{host.project_id}",
                  "instances": f"{self_url}/instances", "stats": f"{self_url}/stats"},
        "actions": {a: f"{self_url}/?action={a}" for a in HOST_ACTIONS_BY_STATE.get(host.shown_state, ())},
    }  # fmt: skip
    if host.driver is not None:
        body[f"{host.driver}Config"] = dict(host.config) if host.config is not None else None
    return body
