"""An in-process Kubernetes API server for tests: kmock's ``KubernetesEmulator`` plus the semantics we need.

kmock's emulator is a JSON store over HTTP: it never assigns uid/resourceVersion/generation, accepts
stale writes, has no PUT, and treats ``/status`` and ``/scale`` as patches of the whole object. The
operator (kopf) and our store are built on the API server's real contract, so ``KubeEmulator`` adds it:

- Server-managed metadata: ``uid``, ``creationTimestamp``, ``generation`` (bumped when anything but
  metadata/status changes, as for custom resources), and one global increasing ``resourceVersion``
  that every write bumps. A write that changes nothing is a no-op (no new version, no watch event),
  as in Kubernetes. ``generateName`` is honoured; a duplicate create is 409 ``AlreadyExists``.
- Optimistic concurrency: a PUT, or a patch whose result carries a ``metadata.resourceVersion``
  other than the stored one, is 409 ``Conflict`` and changes nothing. The IntentLedger store's
  compare-and-swap and kopf's JSON-patch ``test`` ops (a failing op is 422) depend on it.
- PUT (replace), and the ``status`` and ``scale`` subresources of the resources declared with them:
  ``/status`` writes change only ``.status`` and main-resource writes ignore ``.status`` (kopf patches
  the two separately; creates drop ``.status`` too); ``/scale`` is an ``autoscaling/v1`` Scale view
  of ``spec.replicas``. A PUT of a custom resource must name the ``metadata.resourceVersion`` it
  replaces (else 422 ``Invalid``, as the API server answers); built-in ones such as Secrets may be
  replaced unconditionally.
- Namespaces: once the Namespace resource is declared, a create in a namespace that does not exist is
  404 ``namespaces "X" not found``, as on a real API server; :meth:`add_namespaces` seeds them (the
  ``kube`` fixture seeds the system ones). Deleting a Namespace does not delete its contents.
- Custom resources from CRDs: :meth:`apply_crd` (or a POST of the CRD) serves its versions and checks
  every write (create, replace, patch, ``/status``) against the version's ``openAPIV3Schema`` with
  tests/kubeschema.py: pruned, defaulted, then validated (422 ``Invalid`` with ``details.causes``).
  Objects seeded directly are pruned and defaulted too, as the API server does when it reads them.
- Deletion: finalizers hold an object with a ``deletionTimestamp`` until they are patched away (as in
  kmock); a real deletion garbage-collects the objects whose ``ownerReferences`` all point to gone
  owners, cascading (children created with ``kopf.adopt`` go away with their Receiver).
- LIST carries the current resourceVersion; WATCH sends the current objects (or, with
  ``?resourceVersion=N``, the journalled events after N, so nothing is lost between a list and its
  watch, which is how kopf watches) and then live events; ``labelSelector`` and ``fieldSelector``
  (equality, inequality, existence) filter both.
- A watch ends after its ``timeoutSeconds`` (times ``time_scale``, so a test need not wait that
  long). :meth:`compact` forgets the journal up to the current version, as etcd's compaction does: a
  watch from an older version then gets one ERROR event carrying a 410 ``Expired`` Status and ends,
  as the API server answers it, so clients must list again.

Writes happen in the fallback handlers, i.e. only when no test-defined reaction answers the request:
a reaction injecting an error (``kube['patch', kube.resource('apps/v1/deployments')] << 500``) leaves
the state untouched, as a failing API server would (kmock itself writes first, then dispatches).
Objects put into ``kube.objects`` directly get their server-side metadata on the next API request.

Two kmock workarounds: its dispatcher checks ``request in view`` by replaying every past request
through each reaction's filters (quadratic: ~300 ms per request after 1,500 requests, which made
the listener's concurrency tests time out), so ``_dispatch()`` checks only the new request; and its
path parser cannot read ``/api/v1/namespaces[/NAME]`` as the Namespace resource (see ``_reparse()``).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import copy
import datetime
import random
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from typing import Any, cast

import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import kmock
from kmock import KubernetesError
from kmock._internal import rendering  # for Response (201 Created): kmock does not export it

from tests import kubeschema

JsonDict = dict[str, Any]
Key = tuple[kmock.resource, str | None, str]
Selector = Callable[[JsonDict], bool]

VERBS = frozenset({"create", "delete", "get", "list", "patch", "update", "watch"})
CONFLICT_MESSAGE = (
    "the object has been modified; please apply your changes to the latest version and try again"
)
MERGE_PATCHES = {"application/merge-patch+json", "application/strategic-merge-patch+json"}
JSON_PATCH = "application/json-patch+json"
NAMESPACES = "v1/namespaces"
CRDS = "apiextensions.k8s.io/v1/customresourcedefinitions"
# The namespaces every cluster starts with.
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public")
_SERVER_FIELDS = ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "generation")
_META_FIELDS = (*_SERVER_FIELDS, "resourceVersion")
# The API groups Kubernetes serves itself; any other is a custom resource's (its CRD's group).
BUILT_IN_GROUPS = frozenset(
    {
        "",
        "apps",
        "autoscaling",
        "batch",
        "policy",
        "coordination.k8s.io",
        "events.k8s.io",
        "networking.k8s.io",
    }
    | {"rbac.authorization.k8s.io", "apiextensions.k8s.io", "admissionregistration.k8s.io"}
)
_NAMESPACES_PATH = re.compile(r"/api/v1/namespaces(?:/(?P<name>[^/]+)(?:/(?P<sub>status|finalize))?)?/?")
_SELECTOR_TERM = re.compile(r"(?P<neg>!)?(?P<key>[^!=,\s]+)\s*(?:(?P<op>==|=|!=)\s*(?P<value>[^,\s]*))?")


def _error(status: int, reason: str, message: str, name: str | None = None) -> KubernetesError:
    return KubernetesError(status=status, reason=reason, message=message, details={"name": name})


def _timestamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge recursively, ``null`` removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def parse_selector(text: str, lookup: Callable[[JsonDict, str], str | None]) -> Selector:
    """Equality-based selectors: ``a=b``, ``a==b``, ``a!=b``, ``a`` (exists), ``!a`` (absent)."""
    terms = [term.strip() for term in text.split(",") if term.strip()]
    parsed = [_SELECTOR_TERM.fullmatch(term) for term in terms]
    if not all(parsed) or "(" in text:
        raise _error(400, "BadRequest", f"unsupported selector (only equality is emulated): {text!r}")

    def selected(obj: JsonDict) -> bool:
        for match in parsed:
            assert match is not None  # checked above; for type-checkers
            neg, key, op, value = match.group("neg", "key", "op", "value")
            actual = lookup(obj, key)
            if (op is None and (actual is None) != bool(neg)) or (op and (actual == value) != (op != "!=")):
                return False
        return True

    return selected


def _label(obj: JsonDict, key: str) -> str | None:
    value = ((obj.get("metadata") or {}).get("labels") or {}).get(key)
    return None if value is None else str(value)


def _field(obj: JsonDict, path: str) -> str | None:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return None if value is None else str(value)


def _content(obj: JsonDict) -> JsonDict:
    """What ``metadata.generation`` counts: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata", "status")}


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    """See the module docstring; declare resources with :meth:`declare` before using them."""

    # How long one second of a watch's timeoutSeconds lasts: a test shortens watches without sleeping.
    time_scale: float = 1.0
    _revision: int = attrs.field(default=0, init=False)
    _journal: list[tuple[int, kmock.resource, JsonDict]] = attrs.field(factory=list, init=False)
    _compacted: int = attrs.field(default=0, init=False)
    _schemas: dict[kmock.resource, kubeschema.Schema] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.fallback[kmock.method.PUT] << self._serve_replace

    def declare(
        self, resource: str, kind: str, *, namespaced: bool, subresources: Iterable[str] = ()
    ) -> None:
        """Declare a resource for discovery, as kopf reads it: kind, scope, subresources, verbs."""
        info = kmock.ResourceInfo(namespaced=namespaced, kind=kind, singular=kind.lower(), verbs=VERBS)
        info.subresources.update(subresources)
        self.resources[resource] = info

    def apply_crd(self, crd: JsonDict) -> None:
        """Serve a CustomResourceDefinition's versions, every write checked by its schema (kubeschema)."""
        spec, names = crd["spec"], crd["spec"]["names"]
        for version in spec["versions"]:
            schema = version["schema"]["openAPIV3Schema"]
            kubeschema.check(schema)
            resource = f"{spec['group']}/{version['name']}/{names['plural']}"
            subresources = set(version.get("subresources") or {})
            self.declare(
                resource, names["kind"], namespaced=spec["scope"] == "Namespaced", subresources=subresources
            )
            self._schemas[kmock.resource(resource)] = schema

    def add_namespaces(self, *names: str) -> None:
        """Seed these Namespaces (if missing), as a test's cluster has them before anything goes in them."""
        for name in names:
            if not self._namespace_exists(name):
                self.objects[NAMESPACES, None, name] = {}

    @property
    def revision(self) -> str:
        """The latest resourceVersion (what LIST answers carry)."""
        return str(self._revision)

    async def compact(self) -> None:
        """Forget every journalled event up to now: watches from an older version get 410 Gone."""
        async with self._lock:
            self._compacted = self._revision
            self._journal.clear()

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw_request.path.rstrip("/") == "/api/v1/namespaces":
            # kmock's path parser crashes on the namespaces collection before _handle() is reached.
            # Let it parse ".../namespaces/-" instead (no namespace can be named "-"); see _reparse().
            url = raw_request.rel_url.with_path("/api/v1/namespaces/-").with_query(raw_request.query)
            raw_request = raw_request.clone(rel_url=url)
        return await super().__call__(raw_request)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        request = self._reparse(request)
        if request.resource is not None:
            async with self._lock:
                self._stamp_seeded()
        return await self._dispatch(request)

    async def _dispatch(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        """kmock's RawHandler._handle, but with a constant-time ``request in view`` (see _sees()).

        KubernetesEmulator._handle is skipped on purpose: our writes happen in the fallback handlers.
        """
        depth = max((len(payload.priorities) for payload in self._payloads), default=0)

        def order(payload: kmock.Reaction) -> tuple[float, ...]:
            return tuple(-p for p in payload.priorities) + (0,) * (depth - len(payload.priorities))

        for payload in sorted(self._payloads, key=order):
            if self._sees(payload._source, request) and not payload._disabled.is_set():
                try:
                    return await payload(request)
                except rendering.ReactionMismatchError:  # depleted: never again
                    payload._disabled.set()
                except NotImplementedError:  # matched, but nothing to answer with
                    pass
        raise NotImplementedError("no reaction matches the request; add one, e.g. `kube.fallback << 404`")

    def _sees(self, view: kmock.View, request: kmock.Request) -> bool:
        """``request in view``: kmock replays every past request through the filters, O(n) per request."""
        match view:
            case kmock.Root():
                return view is self
            case kmock.Filter():
                return self._sees(view._source, request) and bool(view.criteria(request))
            case kmock.Exclusion():
                excluded = any(self._sees(other, request) for other in view._exclusions)
                return not excluded and self._sees(view._source, request)
            case kmock.Priority():
                return self._sees(view._source, request)
            case kmock.OrGroup():
                return any(self._sees(source, request) for source in view._sources)
            case kmock.AndGroup():
                return all(self._sees(source, request) for source in view._sources)
            case _:  # slices and live streams depend on the history: let kmock decide
                return request in view

    def _reparse(self, request: kmock.Request) -> kmock.Request:
        """kmock reads ``/api/v1/namespaces/NAME`` as a namespace, not as the Namespace object."""
        match = _NAMESPACES_PATH.fullmatch(request.url.path)
        if match is None:
            return request
        name = None if match["name"] in (None, "-") else match["name"]
        watch = request.params.get("watch") == "true"
        verbs = {"GET": kmock.action.WATCH if watch else kmock.action.FETCH if name else kmock.action.LIST}
        verbs.update({"POST": kmock.action.CREATE} if name is None else {})
        verbs.update({"PATCH": kmock.action.UPDATE, "DELETE": kmock.action.DELETE} if name else {})
        resource = kmock.resource("", "v1", "namespaces")
        action = verbs.get(request.method.value)
        fixed = attrs.evolve(
            request, resource=resource, namespace=None, name=name, subresource=match["sub"], action=action
        )
        # kmock's views find requests by identity in the handler's list: put the fixed one there.
        index = next(i for i in reversed(range(len(self._requests))) if self._requests[i] is request)
        self._requests[index] = fixed
        return fixed

    # Bookkeeping. Everything below that touches state runs under self._lock.

    def _next_revision(self) -> str:
        self._revision += 1
        return str(self._revision)

    def _info(self, resource: kmock.resource) -> kmock.ResourceInfo | None:
        if resource not in self.resources:  # its __getitem__ would add an empty entry (seen by discovery)
            return None
        return self.resources[resource]

    def _namespace_exists(self, name: str) -> bool:
        """Whether objects may be created in this namespace (any, when Namespaces are not served)."""
        key: Key = (kmock.resource(NAMESPACES), None, name)
        return self._info(key[0]) is None or (key in self._objects and not self._objects[key].deleted)

    def _subresources(self, resource: kmock.resource) -> set[str]:
        info = self._info(resource)
        return set(info.subresources) if info is not None else set()

    def _type_meta(self, resource: kmock.resource) -> JsonDict:
        info = self._info(resource)
        api_version = f"{resource.group}/{resource.version}" if resource.group else str(resource.version)
        return {"apiVersion": api_version, **({"kind": info.kind} if info and info.kind else {})}

    def _stamp_seeded(self) -> None:
        for (resource, namespace, name), obj in self._objects.items():
            meta = {} if obj.deleted else dict(obj.get("metadata") or {})
            if not obj.deleted and ("uid" not in meta or "resourceVersion" not in meta):
                for key, value in self._type_meta(resource).items():
                    obj.setdefault(key, value)
                obj["metadata"] = {
                    "name": name,
                    **({"namespace": namespace} if namespace is not None else {}),
                    "uid": str(uuid.uuid4()),
                    "creationTimestamp": _timestamp(),
                    "generation": 1,
                    **meta,
                    "resourceVersion": self._next_revision(),
                }
                if resource in self._schemas:  # as read back from storage: pruned and defaulted
                    admitted, _ = kubeschema.admit(self._schemas[resource], obj.raw)
                    for key in set(obj) - set(admitted):
                        del obj[key]
                    obj.update(admitted)

    def _live(self, request: kmock.Request) -> tuple[Key, JsonDict]:
        assert request.resource is not None and request.name is not None  # routed so; for type-checkers
        key: Key = (request.resource, request.namespace, request.name)
        if key not in self._objects or self._objects[key].deleted:
            raise _error(
                404, "NotFound", f'{request.resource.plural} "{request.name}" not found', request.name
            )
        if request.subresource is not None and request.subresource not in self._subresources(key[0]):
            raise _error(404, "NotFound", f"no subresource {request.subresource!r}", request.name)
        return key, copy.deepcopy(self._objects[key].raw)

    async def _emit(self, resource: kmock.resource, kind: str, obj: JsonDict) -> None:
        event = {"type": kind, "object": copy.deepcopy(obj)}
        self._journal.append((self._revision, resource, event))
        await self._buses[resource].put(event)

    async def _store(self, key: Key, obj: JsonDict, event: str) -> JsonDict:
        obj["metadata"]["resourceVersion"] = self._next_revision()
        if key in self._objects:
            self._objects[key].history.append(copy.deepcopy(obj))
        else:
            self._objects[key] = copy.deepcopy(obj)
        await self._emit(key[0], event, obj)
        return obj

    async def _delete(self, key: Key) -> JsonDict:
        obj = copy.deepcopy(self._objects[key].raw)
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            return obj
        if meta.get("finalizers"):
            meta["deletionTimestamp"] = _timestamp()
            return await self._store(key, obj, "MODIFIED")
        return await self._purge(key, obj)

    async def _purge(self, key: Key, obj: JsonDict) -> JsonDict:
        """Really delete, then collect the dependents left without any live owner (cascading)."""
        await self._store(key, obj, "DELETED")
        self._objects[key].delete()
        alive = {(o.get("metadata") or {}).get("uid") for o in self._objects.values() if not o.deleted}
        for child_key, child in list(self._objects.items()):
            refs = {ref.get("uid") for ref in (child.get("metadata") or {}).get("ownerReferences") or []}
            if not child.deleted and obj["metadata"]["uid"] in refs and not refs & alive:
                await self._delete(child_key)
        return obj

    # Fallback handlers: they run only when no test-defined reaction answered the request first.

    async def _serve_create(self, request: kmock.Request) -> kmock.Payload:
        assert request.resource is not None  # routed so; for type-checkers
        resource = request.resource
        if resource not in self._get_resources():
            raise _error(404, "NotFound", f"the server could not find the resource {resource.plural!r}")
        if not isinstance(request.data, dict):
            raise _error(400, "BadRequest", "the body must be a JSON object")
        obj: JsonDict = {**self._type_meta(resource), **copy.deepcopy(request.data)}
        meta = obj.setdefault("metadata", {})
        info = self._info(resource)
        namespace = request.namespace or meta.get("namespace")
        if info is not None and info.namespaced is False:
            namespace = None
        elif request.namespace and meta.get("namespace") not in (None, request.namespace):
            raise _error(400, "BadRequest", "the namespace of the object does not match the URL")
        elif info is not None and info.namespaced and namespace is None:
            raise _error(400, "BadRequest", "a namespaced object needs a namespace")
        suffix = "".join(random.choices("bcdfghjklmnpqrstvwxz2456789", k=5))
        name = meta.get("name") or (meta["generateName"] + suffix if meta.get("generateName") else None)
        if not name:
            raise _error(422, "Invalid", "metadata.name or metadata.generateName is required")
        if "status" in self._subresources(resource):
            obj.pop("status", None)  # set through /status only
        meta.pop("deletionTimestamp", None)
        meta.update(name=name, uid=str(uuid.uuid4()), creationTimestamp=_timestamp(), generation=1)
        meta.update({"namespace": namespace} if namespace is not None else {})
        async with self._lock:
            key: Key = (resource, namespace, name)
            if namespace is not None and not self._namespace_exists(namespace):
                raise _error(404, "NotFound", f'namespaces "{namespace}" not found', namespace)
            if key in self._objects and not self._objects[key].deleted:
                raise _error(409, "AlreadyExists", f'{resource.plural} "{name}" already exists', name)
            if resource == kmock.resource(CRDS):
                try:
                    self.apply_crd(obj)
                except kubeschema.NotStructural as e:
                    raise _error(422, "Invalid", f'{resource.plural} "{name}" is invalid: {e}', name) from e
            obj = await self._store(key, self._admit(resource, obj), "ADDED")
        return rendering.Response(status=201, payload=obj)

    async def _serve_update(self, request: kmock.Request) -> kmock.Payload:
        return await self._write(request, replace=False)

    async def _serve_replace(self, request: kmock.Request) -> kmock.Payload:
        if request.resource is None or request.name is None:
            raise _error(405, "MethodNotAllowed", "PUT needs an object's URL")
        return await self._write(request, replace=True)

    async def _write(self, request: kmock.Request, *, replace: bool) -> JsonDict:
        """PATCH or PUT an object or its status/scale view: preconditions, then the merge back."""
        content_type = next((v for k, v in request.headers.items() if k.lower() == "content-type"), "")
        content_type = content_type.split(";")[0].strip()
        if not replace and content_type not in MERGE_PATCHES | {JSON_PATCH}:
            raise _error(415, "UnsupportedMediaType", f"unsupported patch type: {content_type!r}")
        if not isinstance(request.data, dict) and (replace or content_type != JSON_PATCH):
            raise _error(400, "BadRequest", "the body must be a JSON object")
        async with self._lock:
            key, old = self._live(request)
            if replace and key[0].group not in BUILT_IN_GROUPS:
                self._check_versioned(request.data, key[2])
            scale = request.subresource == "scale"
            view = self._scale(old) if scale else old
            if replace:
                new_view = copy.deepcopy(request.data)
            elif content_type == JSON_PATCH:
                try:
                    new_view = jsonpatch.apply_patch(view, request.data)
                except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
                    raise _error(422, "Invalid", f"the JSON patch cannot be applied: {e}", key[2]) from e
            else:
                new_view = merge_patch(view, request.data)
            expected = (new_view.get("metadata") or {}).get("resourceVersion")
            if expected is not None and expected != old["metadata"]["resourceVersion"]:
                raise _error(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {key[0].plural} "{key[2]}": {CONFLICT_MESSAGE}',
                    key[2],
                )
            new = self._merge_back(key[0], request.subresource, old, new_view)
            new = self._admit(key[0], new)
            for field in _META_FIELDS:
                new["metadata"].pop(field, None)
                new["metadata"].update({field: old["metadata"][field]} if field in old["metadata"] else {})
            if _content(new) != _content(old):
                new["metadata"]["generation"] = old["metadata"].get("generation", 0) + 1
            if new != old:
                new = await self._store(key, new, "MODIFIED")
                if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
                    await self._purge(key, copy.deepcopy(new))
        return self._scale(new) if scale else new

    def _admit(self, resource: kmock.resource, obj: JsonDict) -> JsonDict:
        """The object as its CRD's schema admits it: pruned and defaulted, or a 422 naming each field."""
        schema = self._schemas.get(resource)
        if schema is None:
            return obj
        admitted, causes = kubeschema.admit(schema, obj)
        if causes:
            kind, name = obj.get("kind"), obj["metadata"]["name"]
            lines = [f"{cause['field']}: {cause['message']}" for cause in causes]
            listed = lines[0] if len(lines) == 1 else f"[{', '.join(lines)}]"
            message = f'{kind}.{resource.group} "{name}" is invalid: {listed}'
            details = {"name": name, "group": resource.group, "kind": kind, "causes": causes}
            raise KubernetesError(status=422, reason="Invalid", message=message, details=details)
        return admitted

    def _check_versioned(self, body: Any, name: str) -> None:
        """A custom resource's update must say which version it replaces."""
        if not (body.get("metadata") or {}).get("resourceVersion"):
            message = "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
            raise _error(422, "Invalid", message, name)

    def _merge_back(
        self, resource: kmock.resource, subresource: str | None, old: JsonDict, view: Any
    ) -> JsonDict:
        """The whole object after a write of ``view``: only what that (sub)resource may change."""
        if not isinstance(view, dict) or not isinstance(view.get("metadata", {}), dict):
            raise _error(422, "Invalid", "the result must be a JSON object with a metadata object")
        if subresource == "scale":
            replicas = (view.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise _error(
                    422, "Invalid", f"spec.replicas must be a non-negative integer, not {replicas!r}"
                )
            new = copy.deepcopy(old)
            new.setdefault("spec", {})["replicas"] = replicas
            return new
        new = copy.deepcopy(old if subresource == "status" else view)
        status_source = (
            view if subresource == "status" or "status" not in self._subresources(resource) else old
        )
        new.pop("status", None)
        new.update({"status": copy.deepcopy(status_source["status"])} if "status" in status_source else {})
        new["metadata"] = dict(new.get("metadata") or {})
        new.update({key: old[key] for key in ("apiVersion", "kind") if key in old})
        return new

    def _scale(self, obj: JsonDict) -> JsonDict:
        """The ``autoscaling/v1`` Scale view of a workload."""
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        labels = (spec.get("selector") or {}).get("matchLabels") or {}
        replicas = spec.get("replicas", 1)
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {k: v for k, v in obj["metadata"].items() if k in _META_FIELDS},
            "spec": {"replicas": replicas},
            "status": {
                "replicas": status.get("replicas", replicas),
                "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
            },
        }

    async def _serve_delete(self, request: kmock.Request) -> kmock.Payload:
        options = request.data if isinstance(request.data, dict) else {}  # DeleteOptions
        preconditions = options.get("preconditions") or {}
        async with self._lock:
            key, old = self._live(request)
            for field in ("uid", "resourceVersion"):
                if preconditions.get(field) not in (None, old["metadata"].get(field)):
                    raise _error(409, "Conflict", f"precondition failed: {field}", key[2])
            return await self._delete(key)

    async def _serve_fetch(self, request: kmock.Request) -> kmock.Payload:
        async with self._lock:
            _, obj = self._live(request)
        return self._scale(obj) if request.subresource == "scale" else obj

    async def _serve_list(self, request: kmock.Request) -> kmock.Payload:
        resource, selected = self._selector(request)
        async with self._lock:
            items = [obj.raw for key, obj in self._objects.items() if self._in_scope(request, key, obj)]
            type_meta = self._type_meta(resource)
            return {
                "apiVersion": type_meta["apiVersion"],
                "kind": f"{type_meta.get('kind', '')}List",
                "metadata": {"resourceVersion": self.revision},
                "items": [copy.deepcopy(item) for item in items if selected(item)],
            }

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[kmock.Payload]:
        resource, selected = self._selector(request)
        since = request.params.get("resourceVersion") or "0"
        if not since.isdigit():
            raise _error(400, "BadRequest", f"invalid resourceVersion {since!r}")
        timeout = request.params.get("timeoutSeconds") or "0"
        if not timeout.isdigit():
            raise _error(400, "BadRequest", f"invalid timeoutSeconds {timeout!r}")
        bus = self._buses[resource]
        async with self._lock:  # the backlog and the live events meet exactly at this mark
            expired = self._expired(since) if int(since) < self._compacted else None
            mark = await bus.mark()
            if expired is not None:
                backlog = [expired]
            elif since != "0":
                start = bisect.bisect_right(self._journal, int(since), key=lambda entry: entry[0])
                backlog = [event for _, res, event in self._journal[start:] if res == resource]
            else:
                objs = [obj.raw for key, obj in self._objects.items() if self._in_scope(request, key, obj)]
                backlog = [{"type": "ADDED", "object": copy.deepcopy(obj)} for obj in objs]
            if expired is None and request.params.get("sendInitialEvents") == "true":
                annotations = {"k8s.io/initial-events-end": "true"}
                bookmark = {"resourceVersion": self.revision, "annotations": annotations}
                backlog.append(
                    {"type": "BOOKMARK", "object": {**self._type_meta(resource), "metadata": bookmark}}
                )
        try:
            yield b""  # send the headers now, even if no event ever comes
            for event in backlog:
                if event["type"] in ("BOOKMARK", "ERROR") or self._wanted(request, selected, event["object"]):
                    yield event
            if expired is not None:
                return
            async with contextlib.aclosing(cast(AsyncGenerator[JsonDict], bus.stream(since=mark))) as live:
                async for event in _until(live, int(timeout) * self.time_scale or None):
                    if self._wanted(request, selected, event["object"]):
                        yield event
        finally:
            await bus.unmark(mark)

    def _expired(self, since: str) -> JsonDict:
        """The ERROR event the API server sends to a watch from a compacted version."""
        message = f"too old resource version: {since} ({self._compacted})"
        status = {"status": "Failure", "message": message, "reason": "Expired", "code": 410}
        return {"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {}, **status}}

    def _selector(self, request: kmock.Request) -> tuple[kmock.resource, Selector]:
        assert request.resource is not None  # routed so; for type-checkers
        if request.resource not in self._get_resources():
            raise _error(
                404, "NotFound", f"the server could not find the resource {request.resource.plural!r}"
            )
        labels = parse_selector(request.params.get("labelSelector", ""), _label)
        fields = parse_selector(request.params.get("fieldSelector", ""), _field)
        return request.resource, lambda obj: labels(obj) and fields(obj)

    def _in_scope(self, request: kmock.Request, key: Key, obj: kmock.Object) -> bool:
        resource, namespace, name = key
        return (
            not obj.deleted
            and resource == request.resource
            and request.namespace in (None, namespace)
            and request.name in (None, name)
        )

    def _wanted(self, request: kmock.Request, selected: Selector, obj: JsonDict) -> bool:
        meta = obj.get("metadata") or {}
        return (
            request.namespace in (None, meta.get("namespace"))
            and request.name in (None, meta.get("name"))
            and selected(obj)
        )


async def _until(events: AsyncIterator[JsonDict], seconds: float | None) -> AsyncIterator[JsonDict]:
    """``events`` until ``seconds`` have passed (None: for ever)."""
    if seconds is None:
        async for event in events:
            yield event
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (remaining := deadline - loop.time()) > 0:
        try:
            yield await asyncio.wait_for(anext(events), remaining)
        except (TimeoutError, StopAsyncIteration):
            return
