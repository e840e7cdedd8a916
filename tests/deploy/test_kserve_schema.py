"""deploy/kserve/inferenceservice.yaml is a valid InferenceService: validated offline against
the CRD's own OpenAPI v3 schema made strict (tests/deploy/kserve_crd.py says why), which
rejects each mistake a person could make where the CRD alone lets a typo through."""

import copy
import re
from typing import Any

import pytest
from jsonschema import Draft7Validator

from tests.deploy.kserve_crd import (
    container,
    crd,
    crd_schema,
    errors,
    manifest,
    open_objects,
    predictor,
)


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
