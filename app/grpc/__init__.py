"""The Open Inference Protocol (KServe V2) over gRPC, beside the REST server (app.grpc.server).

v2/ holds the protocol's .proto (KServe's grpc_predict_v2.proto, Apache 2.0, its LICENSE
beside it), model_repository.proto and model_config.proto (this project's: the repository
calls and the minimal ModelConfig of Triton's service) and the modules generated from them. To
regenerate them (grpcio-tools, a dev dependency), from the repository root:

    .venv/bin/python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. \\
        app/grpc/v2/grpc_predict_v2.proto app/grpc/v2/model_repository.proto \\
        app/grpc/v2/model_config.proto
"""
