"""RNN Counter service: FastAPI on onnxruntime. Never imports torch."""
