"""deploy/ray/serve.yaml is a config Ray Serve accepts, naming this repository's builder."""

import importlib
import sys

import pytest
import yaml

from tests.ray.cluster import DEPLOY_RAY

schema = pytest.importorskip("ray.serve.schema", reason="the ray extra")

pytestmark = pytest.mark.filterwarnings("ignore:The `metrics_interval_s` field:DeprecationWarning")


def test_serve_yaml_is_a_serve_config_whose_import_path_is_the_counter() -> None:
    config = yaml.safe_load((DEPLOY_RAY / "serve.yaml").read_text())
    parsed = schema.ServeDeploySchema.model_validate(config)
    (application,) = parsed.applications
    module_name, _, attribute = application.import_path.partition(":")
    sys.path.insert(0, str(DEPLOY_RAY))
    try:
        module = importlib.import_module(module_name)
    finally:
        sys.path.remove(str(DEPLOY_RAY))
    (deployment,) = application.deployments
    assert deployment.name == module.DEPLOYMENT
    built = getattr(module, attribute)({"num_replicas": 1})
    assert type(built).__name__ == "Application"
    scaling = deployment.autoscaling_config
    assert scaling["min_replicas"] == 1
    assert scaling["max_replicas"] == 2
