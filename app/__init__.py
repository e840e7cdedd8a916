"""RNN Counter service: FastAPI on onnxruntime. Never imports torch."""

from importlib.metadata import PackageNotFoundError, version

try:
    # The one version string: pyproject.toml's, as installed (/docs, /v2 and gRPC show it).
    __version__ = version("rnn-counter")
except PackageNotFoundError:  # run from a tree that was never installed
    __version__ = "0+unknown"
