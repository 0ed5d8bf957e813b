"""The Receiver schema, taken from the CRD itself, so files and the Kubernetes API server agree.

The CRD is generated from its base and the installed drivers (``controller.receivers.crd``; the same
text is ``crds/receivers.yaml``): this module takes its ``openAPIV3Schema`` and does with it what the
API server would. The base is package data read through ``importlib.resources``, so an installed
package finds it wherever it is installed, and never through the working directory:

- validates a document with jsonschema. OpenAPI's ``nullable`` becomes a ``"null"`` type and the
  ``x-kubernetes-*`` keys are dropped, since jsonschema does not know them;
- reports fields the schema does not declare. The API server would silently prune them; a file is
  read by nobody else, so a typo (``suspended: true``) would silently do nothing — we say so instead,
  like ``kubectl --validate=strict``;
- fills in the schema's ``default`` s, on a copy, the way the API server defaults a stored object.

Problems carry a field path ("spec.scaleServiceConfig.amount", "spec.fireOn[0]") and a plain message.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError

from controller.drivers import load_drivers
from controller.drivers.contract import Driver
from controller.model import Problem, shown
from controller.receivers.crd import openapi_schema, receiver_crd

KUBERNETES_EXTENSION_PREFIX = "x-kubernetes-"
PRESERVE_UNKNOWN = "x-kubernetes-preserve-unknown-fields"
REQUIRED_MESSAGE = re.compile(r"^'(.+)' is a required property$")
TYPE_NAMES = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "null",
}
BRANCH_LIMITS = (("minimum", "at least"), ("maximum", "at most"), ("pattern", "matching"))
# The API server's one structural form of an int-or-string field: the types in this anyOf, and the
# limits (minimum, maximum, pattern) beside it, each applying to the type it is about.
INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]


def to_json_schema(node: Any) -> Any:
    """An OpenAPI v3 schema as plain JSON Schema: ``nullable`` honoured, ``x-kubernetes-*`` dropped."""
    if isinstance(node, Mapping):
        out = {k: to_json_schema(v) for k, v in node.items() if not k.startswith(KUBERNETES_EXTENSION_PREFIX)}
        if out.pop("nullable", False) and "type" in out:
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        return out
    if isinstance(node, list):
        return [to_json_schema(v) for v in node]
    return node


def apply_defaults(instance: Any, schema: Mapping[str, Any]) -> Any:
    """A copy of ``instance`` with the schema's defaults filled in where a field is absent (or null and
    not nullable), recursively — the API server's defaulting. The instance itself is left untouched."""
    result = copy.deepcopy(instance)
    _fill_defaults(result, schema)
    return result


def _fill_defaults(instance: Any, schema: Mapping[str, Any]) -> None:
    if isinstance(instance, dict):
        for name, sub in (schema.get("properties") or {}).items():
            missing = name not in instance or (instance[name] is None and not sub.get("nullable", False))
            if missing and "default" in sub:
                instance[name] = copy.deepcopy(sub["default"])
            if name in instance:
                _fill_defaults(instance[name], sub)
    elif isinstance(instance, list) and isinstance(schema.get("items"), Mapping):
        for item in instance:
            _fill_defaults(item, schema["items"])


def unknown_fields(
    instance: Any, schema: Mapping[str, Any], path: tuple[str | int, ...] = ()
) -> Iterator[str]:
    """Field paths of mapping keys the schema does not declare (where it declares properties at all)."""
    if isinstance(instance, Mapping):
        properties = schema.get("properties")
        if properties is None or schema.get(PRESERVE_UNKNOWN, False):
            return
        for name, value in instance.items():
            if name in properties:
                yield from unknown_fields(value, properties[name], (*path, name))
            else:
                yield format_path((*path, str(name)))
    elif isinstance(instance, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(instance):
            yield from unknown_fields(item, schema["items"], (*path, index))


def format_path(parts: Sequence[str | int]) -> str:
    """("spec", "fireOn", 0) -> "spec.fireOn[0]"."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def describe_error(error: ValidationError) -> Problem:
    """One jsonschema error as a Problem with a field path and a message a person can act on."""
    parts = [p if isinstance(p, int) else str(p) for p in error.absolute_path]
    value: Any = error.instance
    arg: Any = error.validator_value
    node = error.schema if isinstance(error.schema, Mapping) else {}
    if node.get("anyOf") == INT_OR_STRING and error.validator in ("anyOf", *dict(BRANCH_LIMITS)):
        return Problem(format_path(parts), f"must be {_int_or_string(node)} (got {shown(value)})")
    match error.validator:
        case "required":
            # jsonschema reports a missing field at its parent, once per field, naming it only in the
            # message; the field's own path is clearer.
            missing = REQUIRED_MESSAGE.match(error.message)
            if missing:
                return Problem(format_path([*parts, missing.group(1)]), "required field is missing")
        case "type":
            types = arg if isinstance(arg, list) else [arg]
            wanted = " or ".join(TYPE_NAMES.get(str(t), str(t)) for t in types)
            return Problem(format_path(parts), f"must be {wanted} (got {shown(value)})")
        case "enum":
            return Problem(
                format_path(parts), f"must be one of {', '.join(map(str, arg))} (got {shown(value)})"
            )
        case "minimum":
            return Problem(format_path(parts), f"must be at least {arg} (got {shown(value)})")
        case "maximum":
            return Problem(format_path(parts), f"must be at most {arg} (got {shown(value)})")
        case "pattern":
            return Problem(format_path(parts), f"must match {arg} (got {shown(value)})")
        case "minItems":
            return Problem(format_path(parts), f"must have at least {arg} item(s)")
    return Problem(format_path(parts), error.message)


def _int_or_string(schema: Mapping[str, Any]) -> str:
    """What an int-or-string field takes, e.g. "an integer (at least 1) or a string (matching ^[0-9]+$)"."""
    wanted = []
    for name, keys in (("an integer", ("minimum", "maximum")), ("a string", ("pattern",))):
        limits = [f"{word} {schema[key]}" for key, word in BRANCH_LIMITS if key in keys and key in schema]
        wanted.append(f"{name} ({', '.join(limits)})" if limits else name)
    return " or ".join(wanted)


@dataclass(frozen=True)
class ReceiverSchema:
    """The CRD's schema, ready to check documents and default their specs."""

    openapi: Mapping[str, Any]
    validator: Draft7Validator

    @classmethod
    def load(cls, drivers: Iterable[Driver] | None = None) -> ReceiverSchema:
        """The schema of the CRD generated for ``drivers`` (by default, the installed ones)."""
        openapi = openapi_schema(receiver_crd(load_drivers().values() if drivers is None else drivers))
        json_schema = to_json_schema(openapi)
        Draft7Validator.check_schema(json_schema)
        return cls(openapi=openapi, validator=Draft7Validator(json_schema))

    @property
    def spec_schema(self) -> Mapping[str, Any]:
        spec: Mapping[str, Any] = self.openapi["properties"]["spec"]
        return spec

    def problems(self, document: Mapping[str, Any]) -> list[Problem]:
        """Schema errors and unknown fields of a whole document, in field order."""
        found = [describe_error(e) for e in self.validator.iter_errors(document)]
        found += [Problem(path, "unknown field") for path in unknown_fields(document, self.openapi)]
        return sorted(found, key=lambda p: p.path)

    def default_spec(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        defaulted: dict[str, Any] = apply_defaults(dict(spec), self.spec_schema)
        return defaulted
