"""A CRD version's ``openAPIV3Schema`` applied to custom-resource writes, as the API server applies it.

The API server treats every create, replace, patch and ``/status`` write of a custom resource the same
way, in this order: it prunes what the structural schema does not declare, fills in ``default``s, then
validates; an invalid object is answered 422 with one cause per field. :func:`admit` does the three
steps on the whole object after the write is merged, so the emulator's answers (and what it stores) are
what a real cluster would give the operator.

- Pruning drops every field not in ``properties`` unless its node says
  ``x-kubernetes-preserve-unknown-fields: true``; ``additionalProperties`` keeps every key and prunes
  its value. At the root ``apiVersion``, ``kind`` and ``metadata`` are the server's and kept whole.
- Defaulting fills an absent (or ``null`` but not ``nullable``) field that has a ``default``; a ``null``
  without one is dropped, as the API server drops it.
- Validation gives one :class:`Cause` per failing field and problem (reason, message, field path), in
  the API server's words, so a test can assert on ``spec.scaleServiceConfig.amount: Invalid value: ...``.

:func:`check` runs when a CRD is applied. It refuses a schema that is not structural, as the API server
refuses such a v1 CRD (typed ``anyOf`` branches beyond the int-or-string pair, a field without a type),
and any keyword or format the module does not apply (``NotImplementedError``): only what the project's
CRDs use, and its close relatives, is implemented, and a keyword added to a CRD is never silently
ignored by the tests.
"""

from __future__ import annotations

import copy
import datetime
import json
import re
from typing import Any, TypedDict

Schema = dict[str, Any]


class Cause(TypedDict):
    """One entry of a 422 Status's ``details.causes``, as the API server words it."""

    reason: str
    message: str
    field: str


# What each keyword does here; anything else in a schema is refused by check().
_ANNOTATIONS = frozenset({"description", "x-kubernetes-list-map-keys"})
_STRUCTURE = frozenset(
    {"type", "properties", "items", "additionalProperties", "nullable", "default"}
    | {"x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string", "x-kubernetes-list-type"}
)
_VALIDATIONS = frozenset(
    {"required", "enum", "minimum", "maximum", "minLength", "maxLength", "pattern", "format"}
    | {"minItems", "maxItems", "minProperties", "maxProperties", "anyOf", "oneOf"}
)
KEYWORDS = _ANNOTATIONS | _STRUCTURE | _VALIDATIONS
FORMATS = frozenset({"date-time"})
INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]
_ROOT_FIELDS = ("apiVersion", "kind", "metadata")
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


class NotStructural(ValueError):
    """A schema the API server refuses: CRDs of ``apiextensions.k8s.io/v1`` must be structural."""


def check(schema: Schema, path: str = "openAPIV3Schema", *, nested: bool = False) -> None:
    """Refuse a schema that is not structural (:class:`NotStructural`, as the API server refuses its
    CRD) or that uses a keyword or format :func:`admit` does not apply (``NotImplementedError``)."""
    generics = set(schema) & (_STRUCTURE | _ANNOTATIONS) - {"properties", "items"}
    if nested and generics:
        raise NotStructural(f"{path}: {sorted(generics)} must be empty to be structural inside anyOf/oneOf")
    generic = "type" in schema or schema.get("x-kubernetes-preserve-unknown-fields") is True
    if not nested and not generic and not schema.get("x-kubernetes-int-or-string"):
        raise NotStructural(f"{path}.type: Required value: must not be empty for specified fields")
    unknown = set(schema) - KEYWORDS
    if unknown:
        raise NotImplementedError(f"{path}: schema keywords not emulated: {sorted(unknown)}")
    if schema.get("format", "date-time") not in FORMATS:
        raise NotImplementedError(f"{path}: format not emulated: {schema['format']!r}")
    if schema.get("x-kubernetes-list-type", "atomic") not in ("atomic", "set", "map"):
        raise NotImplementedError(f"{path}: list type not emulated: {schema['x-kubernetes-list-type']!r}")
    for name, sub in (schema.get("properties") or {}).items():
        check(sub, f"{path}.properties.{name}", nested=nested)
    for keyword in ("items", "additionalProperties"):
        if isinstance(schema.get(keyword), dict):
            check(schema[keyword], f"{path}.{keyword}", nested=nested)
    int_or_string = schema.get("anyOf") == INT_OR_STRING  # the one typed anyOf the API server allows
    for keyword in ("anyOf", "oneOf"):
        for i, sub in enumerate(schema.get(keyword) or []):
            check(sub, f"{path}.{keyword}[{i}]", nested=not (keyword == "anyOf" and int_or_string))


def admit(schema: Schema, obj: dict[str, Any]) -> tuple[dict[str, Any], list[Cause]]:
    """The object pruned and defaulted, and the causes (one per field and problem) that make it invalid."""
    root = {key: copy.deepcopy(obj[key]) for key in _ROOT_FIELDS if key in obj}
    rest = {key: value for key, value in obj.items() if key not in _ROOT_FIELDS}
    content = default(schema, prune(schema, rest))
    admitted = {**root, **content}
    causes: list[Cause] = []
    validate(schema, {**content, **{k: v for k, v in root.items() if k != "metadata"}}, "", causes)
    return admitted, causes


def prune(schema: Schema, value: Any) -> Any:
    """``value`` without the fields the schema does not declare."""
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(schema["items"], item) for item in value]
    if not isinstance(value, dict):
        return copy.deepcopy(value)
    properties: dict[str, Schema] = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    result = {}
    for key, item in value.items():
        sub = properties.get(key) if key in properties else extra if isinstance(extra, dict) else None
        if sub is not None:
            result[key] = prune(sub, item)
        elif schema.get("x-kubernetes-preserve-unknown-fields") is True:
            result[key] = copy.deepcopy(item)
    return result


def default(schema: Schema, value: Any) -> Any:
    """``value`` with the schema's defaults filled in (and non-nullable nulls dropped), recursively."""
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [default(schema["items"], item) for item in value]
    if not isinstance(value, dict):
        return value
    properties: dict[str, Schema] = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    result = {}
    for key, item in value.items():
        sub = properties.get(key) if key in properties else extra if isinstance(extra, dict) else None
        if sub is None:  # an unknown field a preserve-unknown-fields node kept: the schema says nothing
            result[key] = item
            continue
        if item is None and not sub.get("nullable"):
            if "default" in sub:
                result[key] = default(sub, copy.deepcopy(sub["default"]))
            continue
        result[key] = default(sub, item)
    for key, sub in properties.items():
        if key not in result and "default" in sub:
            result[key] = default(sub, copy.deepcopy(sub["default"]))
    return result


def validate(schema: Schema, value: Any, path: str, causes: list[Cause]) -> None:
    """Append to ``causes`` each way ``value`` (at ``path``) breaks the schema."""
    where = path or "<root>"
    if value is None:
        if not schema.get("nullable") and ("type" in schema or schema.get("x-kubernetes-int-or-string")):
            _add(causes, where, f"Invalid value: null: {where} in body must be of type {_type(schema)}")
        return
    if not _typed(schema, value):
        shown = _json(value)
        _add(causes, where, f"Invalid value: {shown}: {where} in body must be of type {_type(schema)}")
        return
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(_json(v) for v in schema["enum"])
        _add(causes, where, f"Unsupported value: {_json(value)}: supported values: {supported}")
    _validate_bounds(schema, value, where, causes)
    for keyword in ("anyOf", "oneOf"):
        if keyword in schema:
            _validate_alternatives(schema, keyword, value, path, causes)
    if isinstance(value, dict):
        _validate_object(schema, value, path, causes)
    elif isinstance(value, list):
        _validate_array(schema, value, path, causes)


# The cause's reason, from how its message starts (the API server's field.ErrorType names).
_REASONS = {
    "Required value": "FieldValueRequired",
    "Unsupported value": "FieldValueNotSupported",
    "Duplicate value": "FieldValueDuplicate",
    "Too long": "FieldValueTooLong",
    "Too many": "FieldValueTooMany",
}


def _add(causes: list[Cause], field: str, message: str) -> None:
    reason = next((r for start, r in _REASONS.items() if message.startswith(start)), "FieldValueInvalid")
    causes.append({"reason": reason, "message": message, "field": field})


def _typed(schema: Schema, value: Any) -> bool:
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, (int, str)) and not isinstance(value, bool)
    if "type" not in schema:
        return True
    wanted: str = schema["type"]
    if isinstance(value, bool):
        return wanted == "boolean"
    return isinstance(value, _TYPES[wanted]) and not (wanted == "integer" and isinstance(value, float))


def _type(schema: Schema) -> str:
    return "integer or string" if schema.get("x-kubernetes-int-or-string") else str(schema.get("type"))


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _validate_bounds(schema: Schema, value: Any, where: str, causes: list[Cause]) -> None:
    """The value validations of one node: each applies only to the JSON type it is about."""
    invalid = f"Invalid value: {_json(value)}: {where} in body"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            _add(causes, where, f"{invalid} should be greater than or equal to {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            _add(causes, where, f"{invalid} should be less than or equal to {schema['maximum']}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            _add(causes, where, f"{invalid} should be at least {schema['minLength']} chars long")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            _add(causes, where, f"Too long: may not be more than {schema['maxLength']} bytes")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            _add(causes, where, f"{invalid} should match '{schema['pattern']}'")
        if schema.get("format") == "date-time" and not _is_date_time(value):
            _add(causes, where, f"{invalid} must be of type date-time")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            _add(causes, where, f"{invalid} should have at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            _add(causes, where, f"Too many: {len(value)}: must have at most {schema['maxItems']} items")
    if isinstance(value, dict):
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            _add(causes, where, f"{invalid} should have at least {schema['minProperties']} properties")
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            _add(causes, where, f"{invalid} should have at most {schema['maxProperties']} properties")


def _is_date_time(text: str) -> bool:
    try:
        datetime.datetime.fromisoformat(text)
    except ValueError:
        return False
    return "T" in text.upper()


def _validate_alternatives(schema: Schema, keyword: str, value: Any, path: str, causes: list[Cause]) -> None:
    """anyOf: at least one branch holds; oneOf: exactly one does (branches carry value validations)."""
    holding = 0
    for branch in schema[keyword]:
        branch_causes: list[Cause] = []
        validate(branch, value, path, branch_causes)
        holding += not branch_causes
    where = path or "<root>"
    if keyword == "anyOf" and not holding:
        _add(causes, where, f"Invalid value: {_json(value)}: must validate at least one schema (anyOf)")
    if keyword == "oneOf" and holding != 1:
        _add(causes, where, f"Invalid value: {_json(value)}: must validate one and only one schema (oneOf)")


def _validate_object(schema: Schema, value: dict[str, Any], path: str, causes: list[Cause]) -> None:
    prefix = f"{path}." if path else ""
    for name in schema.get("required") or []:
        if name not in value:
            _add(causes, f"{prefix}{name}", "Required value")
    properties: dict[str, Schema] = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    for key, item in value.items():
        sub = properties.get(key) if key in properties else extra if isinstance(extra, dict) else None
        if sub is not None:
            validate(sub, item, f"{prefix}{key}", causes)


def _validate_array(schema: Schema, value: list[Any], path: str, causes: list[Cause]) -> None:
    if isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            validate(schema["items"], item, f"{path}[{i}]", causes)
    list_type = schema.get("x-kubernetes-list-type", "atomic")
    keys: list[str] = schema.get("x-kubernetes-list-map-keys") or []
    seen: list[Any] = []
    for i, item in enumerate(value):
        identity = (
            {key: item.get(key) for key in keys} if list_type == "map" and isinstance(item, dict) else item
        )
        if list_type != "atomic" and identity in seen:
            _add(causes, f"{path}[{i}]", f"Duplicate value: {_json(identity)}")
        seen.append(identity)
