"""Offline PyTorch package: data, model, training, evaluation, certificate, ONNX export."""
