"""deploy/kserve/inferenceservice.yaml is a valid InferenceService and says what the service
needs: validated offline against the CRD's own OpenAPI v3 schema (made strict, see below),
probes on routes the app really serves, the port the image exposes, the image tag of the
version the app reports, a hardened pod, resources, and a stop that drains.

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

import copy
import functools
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from jsonschema import Draft7Validator, FormatChecker, ValidationError
from jsonschema.protocols import Validator

from app.main import create_app
from app.settings import Settings
from tests.deploy.files import (
    APP_UID,
    CONTAINER_PORT,
    DOCKERFILE,
    REPO,
    WORST_MB,
    known_setting_variables,
    load_yaml_documents,
    quantity_bytes,
)

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


def test_one_worker_per_cpu_of_the_container_limit() -> None:
    """COUNTER_WORKERS comes from the predictor's own CPU limit, in whole CPUs."""
    (workers,) = [item for item in container()["env"] if item["name"] == "COUNTER_WORKERS"]
    field = workers["valueFrom"]["resourceFieldRef"]
    assert field == {"containerName": container()["name"], "resource": "limits.cpu", "divisor": "1"}


def test_it_is_an_inference_service_of_the_crd() -> None:
    document, definition = manifest(), crd()
    group = definition["spec"]["group"]
    assert document["apiVersion"] == f"{group}/v1beta1"
    assert document["kind"] == definition["spec"]["names"]["kind"] == "InferenceService"


def test_manifest_validates_against_the_strict_crd_schema() -> None:
    assert errors(manifest()) == []


def test_the_crd_keeps_unknown_fields_only_in_metadata_and_status() -> None:
    # Where the schema cannot catch a typo: if KServe's CRD opens another place, this test
    # says so, and the manifest's use of it needs a check of its own.
    places = {
        re.sub(r"^\.spec\.[^.]*(\[\])?\.(predictor\.)?", ".spec.*.", p)
        for p in open_objects(crd_schema())
    }
    assert places <= {
        ".metadata",
        ".status",
        ".spec.*.volumes[].ephemeral.volumeClaimTemplate.metadata",
        ".spec.*.workerSpec.volumes[].ephemeral.volumeClaimTemplate.metadata",
    }, places
    assert not _uses_open_place(manifest()), "the manifest writes into a place no schema checks"


def _uses_open_place(document: dict[str, Any]) -> bool:
    return any("ephemeral" in volume for volume in predictor(document).get("volumes", []))


def _with(change: str) -> dict[str, Any]:
    """A copy of the manifest with one mistake a person could make."""
    document = copy.deepcopy(manifest())
    spec, box = predictor(document), container(document)
    if change == "typo in a probe":
        box["readinesProbe"] = box.pop("readinessProbe")
    elif change == "typo in the security context":
        box["securityContext"]["readOnlyRootFilesytem"] = True
        del box["securityContext"]["readOnlyRootFilesystem"]
    elif change == "typo at the top of spec":
        document["spec"]["predicter"] = document["spec"].pop("predictor")
    elif change == "protocolVersion on a custom predictor":
        spec["protocolVersion"] = "v2"
    elif change == "a port as a list":
        box["ports"][0]["containerPort"] = [8000]
    elif change == "a port beyond int32":
        box["ports"][0]["containerPort"] = 2**40
    elif change == "a probe port neither integer nor string":
        box["livenessProbe"]["httpGet"]["port"] = 8000.5
    elif change == "the same variable twice":
        box["env"].append({"name": "COUNTER_PORT", "value": "9000"})
    elif change == "an unknown scale metric":
        spec["scaleMetric"] = "cpus"
    elif change == "a container without a name":
        del box["name"]
    else:
        raise AssertionError(change)
    return document


# each mistake, and what the schema check must say about it
MISTAKES = {
    "typo in a probe": "'readinesProbe' was unexpected",
    "typo in the security context": "'readOnlyRootFilesytem' was unexpected",
    "typo at the top of spec": "'predicter' was unexpected",
    "protocolVersion on a custom predictor": "'protocolVersion' was unexpected",
    "a port as a list": "[8000] is not of type 'integer'",
    "a port beyond int32": "is not a 'int32'",
    "a probe port neither integer nor string": "8000.5 is neither an integer nor a string",
    "the same variable twice": "two entries share the keys {'name': 'COUNTER_PORT'}",
    "an unknown scale metric": "'cpus' is not one of",
    "a container without a name": "'name' is a required property",
}


@pytest.mark.parametrize("change", MISTAKES)
def test_the_schema_check_rejects_a_wrong_manifest(change: str) -> None:
    found = errors(_with(change))
    assert any(MISTAKES[change] in error for error in found), found


def test_the_crd_alone_would_let_a_typo_through() -> None:
    # Why strict(): the schema as shipped accepts a misspelt field (the API server would
    # prune it, silently, and the pod would run without a readiness probe).
    loose = Draft7Validator(crd_schema())
    assert not list(loose.iter_errors(_with("typo in a probe")))


def test_metadata_is_valid_object_meta() -> None:
    metadata = manifest()["metadata"]
    # An InferenceService name becomes Service and host names: a DNS-1035 label.
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", metadata["name"])
    assert len(metadata["name"]) <= 63
    assert set(metadata) <= {"name", "namespace", "labels", "annotations"}
    for key in ("labels", "annotations"):
        assert all(isinstance(v, str) for v in metadata.get(key, {}).values()), key
    mode = metadata["annotations"]["serving.kserve.io/deploymentMode"]
    assert mode in {"Standard", "RawDeployment"}  # the preStop hook needs a plain Deployment


def test_kserve_finds_the_predictor_and_its_protocol() -> None:
    assert container()["name"] == "kserve-container"
    # The only way to give a custom predictor's protocol (KServe accepts v1 or v2).
    assert env()["PROTOCOL"] == "v2"


def test_settings_are_variables_the_app_reads() -> None:
    counter_names = {name for name in env() if name.startswith("COUNTER_")}
    assert counter_names <= known_setting_variables(), counter_names - known_setting_variables()
    assert env()["COUNTER_HOST"] == "0.0.0.0"
    assert env()["COUNTER_PORT"] == str(CONTAINER_PORT)


def test_port_is_the_one_the_image_exposes() -> None:
    exposed = re.findall(r"^EXPOSE\s+(\d+)", DOCKERFILE.read_text(), re.MULTILINE)
    # KServe routes one port per container: the HTTP one (gRPC, 8001, is the image's other).
    assert exposed[0] == str(CONTAINER_PORT)
    assert [port["containerPort"] for port in container()["ports"]] == [CONTAINER_PORT]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container()[probe]["httpGet"]["port"] == CONTAINER_PORT, probe


def test_image_tag_is_the_version_the_app_reports() -> None:
    name, tag = container()["image"].rsplit(":", 1)
    assert name.endswith("rnn-counter")
    assert tag == create_app().version  # what GET /v2 and the OpenAPI document say


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[TestClient, FastAPI]]:
    """The app, started (models loaded, re-proved and warmed up), and a client of it."""
    app = create_app(Settings(access_log=False, walked_certificates="skip"))
    with TestClient(app) as client:
        yield client, app


def test_probes_point_at_paths_the_service_serves(served: tuple[TestClient, FastAPI]) -> None:
    client, _ = served
    box = container()
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        path = box[probe]["httpGet"]["path"]
        response = client.get(path)
        assert response.status_code == 200, (probe, path, response.text)
    assert client.get(box["readinessProbe"]["httpGet"]["path"]).json() == {"ready": True}
    assert client.get("/v2/health/nonexistent").status_code == 404  # a wrong path would fail


def test_readiness_fails_while_draining_and_liveness_does_not(
    served: tuple[TestClient, FastAPI],
) -> None:
    client, app = served
    box = container()
    service = app.state.service
    service.ready, service.draining = False, True  # what SIGTERM does (app/http/server.py)
    try:
        assert client.get(box["readinessProbe"]["httpGet"]["path"]).status_code == 503
        assert client.get(box["livenessProbe"]["httpGet"]["path"]).status_code == 200
    finally:
        service.ready, service.draining = True, False


def test_pod_is_hardened() -> None:
    pod = predictor()["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == APP_UID
    security = container()["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "add" not in security["capabilities"]
    mounts = {mount["mountPath"]: mount["name"] for mount in container()["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in predictor()["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def _cpu(quantity: str | int) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def test_resources_have_requests_and_limits() -> None:
    resources = container()["resources"]
    for kind in ("requests", "limits"):
        # Map keys are free in the schema: a misspelt resource name would pass it.
        assert set(resources[kind]) == {"cpu", "memory"}, kind
    assert _cpu(resources["requests"]["cpu"]) == pytest.approx(0.25)
    assert _cpu(resources["limits"]["cpu"]) == pytest.approx(1.0)
    assert quantity_bytes(resources["requests"]["memory"]) == 256 * 2**20
    # The worst the defaults admit at once peaked at WORST_MB (bench.load's memory scenario):
    # the limit leaves it room, so the pod is not killed for what it admits.
    assert quantity_bytes(resources["limits"]["memory"]) >= 1.5 * WORST_MB * 10**6


def test_stop_drains_within_the_grace_period() -> None:
    command = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    assert len(command) == 2
    pre_stop = float(command[1])
    assert 2 <= pre_stop <= 15, "long enough for endpoints to update, short of the grace period"
    settings = Settings()
    drain = float(env().get("COUNTER_DRAIN_SECONDS", settings.drain_seconds))
    # uvicorn's graceful stop waits for in-flight runs up to max_run_seconds + 1
    # (app/http/server.py)
    graceful = settings.max_run_seconds + 1
    assert pre_stop + drain + graceful < predictor()["terminationGracePeriodSeconds"]


def test_documented_in_the_deploy_readme() -> None:
    text = (REPO / "deploy" / "README.md").read_text()
    assert "deploy/kserve/inferenceservice.yaml" in text
    assert "/v2/models/counter/infer" in text
