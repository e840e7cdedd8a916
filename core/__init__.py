"""What training and serving share, so that neither reaches into the other.

codec (number <-> digit layout), card (the model card schema), session (the onnxruntime
options every measurement and every answer uses), weights (the RNN read back from an exported
graph) and certify (the interval-box proof). No torch, no FastAPI: numpy, onnx and onnxruntime.
"""
