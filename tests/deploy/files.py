"""Where the deployment files are, how to read them, and which settings the app knows."""

import re
from pathlib import Path
from typing import Any

import yaml

from app.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE_FILE = REPO / "docker-compose.yml"
KUBERNETES_DIR = REPO / "deploy" / "kubernetes"
MODELS_DIR = REPO / "models"

# The port the image serves on (EXPOSE, COUNTER_PORT) and every manifest points at.
CONTAINER_PORT = 8000
# The gRPC port (COUNTER_GRPC_PORT) in the image, compose and Kubernetes, as Triton's.
GRPC_PORT = 8001
# The uid the image runs as; the Kubernetes pod security context names it too.
APP_UID = 10001
# The peak resident memory, in MB, of the worst the defaults admit at once in one worker
# (`python -m bench.load --scenarios memory`): the manifests' memory limits are set from it.
WORST_MB = 356


def quantity_bytes(quantity: str | int) -> int:
    """A Kubernetes quantity of bytes ("512Mi", "1G", 1024) as a number."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    found = re.fullmatch(r"(\d+)([KMG]i?)?", str(quantity))
    assert found, quantity
    return int(found.group(1)) * units.get(found.group(2) or "", 1)


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document in a file, each a mapping."""
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert all(isinstance(doc, dict) for doc in documents), f"{path}: a document is not a mapping"
    return documents


def known_setting_variables() -> set[str]:
    """The COUNTER_* environment variables that app/settings.py reads."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    return {(prefix + name).upper() for name in Settings.model_fields}
