"""The tests. Imported before any test module or conftest, so this holds for the whole run."""

import os

# onnxruntime reports usage telemetry (a device id and a database under ~/.cache/Microsoft/)
# unless this is set: off in this process, which loads models in-process, and in every server,
# Ray node and subprocess the tests start, as make, the image and the manifests have it.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
