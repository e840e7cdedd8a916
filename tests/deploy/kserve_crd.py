"""deploy/kserve/inferenceservice.yaml and the CRD it must satisfy, for the KServe tests: the
manifest's parts (predictor, container, env) and a validator of the CRD's OpenAPI v3 schema,
made strict.

The CRD's schema (tests/reference/kserve/) declares no `additionalProperties: false` anywhere:
the API server prunes unknown fields of a structural schema silently (or rejects them, only with
kubectl's strict field validation). Validated as it is, a misspelt field would pass and then
vanish. So `strict()` closes every object schema that lists its properties, except where the
CRD keeps unknown fields on purpose: `status` (x-kubernetes-preserve-unknown-fields) and the
`metadata` objects (ObjectMeta, no properties: the API server validates those itself, and
test_metadata_is_valid_object_meta checks ours). Maps (`labels`, `annotations`,
`resources.limits`, `nodeSelector` ...) keep their free keys; the resource names are checked by
hand. The `x-kubernetes-*` extensions that constrain values are enforced here too: int-or-string,
list-type map (unique keys) and set, and the int32/int64 formats.
"""

import functools
from collections.abc import Iterator
from typing import Any

import jsonschema
import yaml
from jsonschema import Draft7Validator, FormatChecker, ValidationError
from jsonschema.protocols import Validator

from tests.deploy.files import REPO, load_yaml_documents

MANIFEST = REPO / "deploy" / "kserve" / "inferenceservice.yaml"
CRD = REPO / "tests" / "reference" / "kserve" / "serving.kserve.io_inferenceservices.yaml"
SCHEMA_KEYWORDS_WITH_ONE_SCHEMA = ("items", "not")
SCHEMA_KEYWORDS_WITH_SCHEMA_LISTS = ("anyOf", "allOf", "oneOf")


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with every object that lists its properties closed to any other field."""
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {name: strict(sub) for name, sub in out["properties"].items()}
        if "additionalProperties" not in out and not out.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = strict(out["additionalProperties"])
    for key in SCHEMA_KEYWORDS_WITH_ONE_SCHEMA:
        if isinstance(out.get(key), dict):
            out[key] = strict(out[key])
    for key in SCHEMA_KEYWORDS_WITH_SCHEMA_LISTS:
        if key in out:
            out[key] = [strict(sub) for sub in out[key]]
    return out


def open_objects(schema: dict[str, Any], path: str = "") -> Iterator[str]:
    """Paths of the object schemas that accept any field (no properties, no map schema)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        yield path
        return
    if schema.get("type") == "object" and not {"properties", "additionalProperties"} & set(schema):
        yield path
    for name, sub in schema.get("properties", {}).items():
        yield from open_objects(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from open_objects(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from open_objects(schema["additionalProperties"], f"{path}{{}}")


def _int_or_string(
    validator: Validator, value: Any, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if value and not (isinstance(instance, str) or type(instance) is int):
        yield ValidationError(f"{instance!r} is neither an integer nor a string")


def _list_type(
    validator: Validator, value: Any, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if not isinstance(instance, list):
        return
    if value == "set":
        seen_items: list[Any] = []
        for item in instance:
            if item in seen_items:
                yield ValidationError(f"{item!r} appears twice in a list-type set")
            seen_items.append(item)
    elif value == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        fields = schema.get("items", {}).get("properties", {})
        seen: set[str] = set()
        for item in instance:
            if not isinstance(item, dict):
                continue
            key = tuple(item.get(k, fields.get(k, {}).get("default")) for k in keys)
            if repr(key) in seen:
                shown = dict(zip(keys, key, strict=True))
                yield ValidationError(f"two entries share the keys {shown}")
            seen.add(repr(key))


def _format_checker() -> FormatChecker:
    checker = FormatChecker()

    def bounded(bits: int) -> Any:
        def check(value: object) -> bool:
            return type(value) is not int or -(2 ** (bits - 1)) <= value < 2 ** (bits - 1)

        return check

    checker.checks("int32")(bounded(32))
    checker.checks("int64")(bounded(64))
    return checker


@functools.cache
def crd() -> dict[str, Any]:
    """The CRD (2 MB of YAML: libyaml's parser reads it in a second or two, PyYAML's in ten)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document: dict[str, Any] = yaml.load(CRD.read_text(), Loader=loader)
    return document


def crd_schema() -> dict[str, Any]:
    """The OpenAPI v3 schema of the served v1beta1 version, as the CRD states it."""
    (version,) = [v for v in crd()["spec"]["versions"] if v["name"] == "v1beta1"]
    assert version["served"]
    assert version["storage"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


@functools.cache
def validator() -> Validator:
    kind = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
        Draft7Validator,
        {"x-kubernetes-int-or-string": _int_or_string, "x-kubernetes-list-type": _list_type},
    )
    result: Validator = kind(strict(crd_schema()), format_checker=_format_checker())
    return result


def manifest() -> dict[str, Any]:
    (document,) = load_yaml_documents(MANIFEST)
    return document


def errors(document: dict[str, Any]) -> list[str]:
    found = sorted(validator().iter_errors(document), key=lambda e: list(e.absolute_path))
    return [f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in found]


def predictor(document: dict[str, Any] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = (document or manifest())["spec"]["predictor"]
    return result


def container(document: dict[str, Any] | None = None) -> dict[str, Any]:
    containers = predictor(document)["containers"]
    assert len(containers) == 1, "one container: the service, one uvicorn process per pod"
    result: dict[str, Any] = containers[0]
    return result


def env(document: dict[str, Any] | None = None) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container(document)["env"] if "value" in item}
