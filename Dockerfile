# The serving image: the FastAPI app on onnxruntime with the shipped models; no torch, no
# compiler, not root, nothing written at run time (a read-only root works). deploy/README.md:
#   docker build -t rnn-counter:2.0.0 .
#   docker run --rm -p 8000:8000 -p 8001:8001 rnn-counter:2.0.0   (REST, and gRPC on 8001)
# BASE_IMAGE may be any Debian-like image with python3 >= 3.11 and its venv module.
ARG BASE_IMAGE=python:3.12-slim

# Stage 1: a virtual environment holding the core (serving) dependencies and the app package.
FROM ${BASE_IMAGE} AS build
RUN python3 -m venv /opt/venv
WORKDIR /src
# Dependencies first, read from pyproject's core list (no train or dev extras), so this layer
# is rebuilt only when pyproject.toml changes, not on every code change.
COPY pyproject.toml ./
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r requirements.txt
COPY README.md ./
COPY core/ core/
COPY app/ app/
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps .
# Size (goal <= 250 MB): drop what serving never loads, keep everything it does (the image test
# serves both models). onnxruntime's Python module carries the whole runtime itself, so its C-API
# copy (libonnxruntime.so, ~35 MB, for non-Python callers), its offline tools (model conversion,
# optimisation, quantisation, the ONNX backend API, sample models) and the packages only those
# tools import (flatbuffers, packaging; protobuf stays: the gRPC service reads it) go; so do numpy's test suites and build-time
# parts (f2py, distutils, C headers, Cython declarations, the SIMD test module), the .pyi type
# stubs, and the installer itself.
RUN site="$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
    && /opt/venv/bin/pip uninstall --yes --disable-pip-version-check flatbuffers packaging \
    && rm -rf "$site"/onnxruntime/capi/libonnxruntime.so.* "$site"/onnxruntime/transformers \
        "$site"/onnxruntime/quantization "$site"/onnxruntime/tools "$site"/onnxruntime/backend \
        "$site"/onnxruntime/datasets "$site"/numpy/f2py "$site"/numpy/distutils \
        "$site"/numpy/_core/include "$site"/numpy/_pyinstaller "$site"/numpy/_core/_simd.* \
        /opt/venv/bin/f2py /opt/venv/bin/onnxruntime_test \
    && find "$site/numpy" -depth -type d -name tests -exec rm -rf {} + \
    && find "$site" \( -name '*.pyi' -o -name '*.pxd' \) -delete \
    && /opt/venv/bin/pip uninstall --yes --disable-pip-version-check pip setuptools

# Stage 2: the runtime, the venv and the models; everything root-owned and read-only to the app.
FROM ${BASE_IMAGE}
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin counter
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY models/ models/
# Settings are COUNTER_* variables (app/settings.py); inside a container the app must listen
# beyond loopback. onnxruntime reports usage telemetry unless ORT_DISABLE_TELEMETRY is set.
ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    COUNTER_HOST=0.0.0.0 \
    COUNTER_PORT=8000 \
    COUNTER_GRPC_PORT=8001 \
    COUNTER_MODELS_DIR=/app/models \
    COUNTER_LOG_LEVEL=info \
    ORT_DISABLE_TELEMETRY=1
USER 10001:10001
EXPOSE 8000
# The Open Inference Protocol over gRPC (app/grpc), on Triton's port.
EXPOSE 8001
# Healthy means ready: the models are loaded and warmed up. Python's urllib, so no curl needed.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('COUNTER_PORT', '8000'), timeout=2)"]
CMD ["python", "-m", "app"]
