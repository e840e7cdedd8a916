"""The protocols: the counter's JSON and the Open Inference Protocol (KServe V2). Request bodies
and tensors read into typed requests, the routes, and the OpenAPI document derived from both."""
