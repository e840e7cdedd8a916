"""tests/torch_stack.py decides what `make check` runs and type-checks without torch: it must
see torch behind the repository's own modules, and leave the service's code in."""

from tests.torch_stack import ROOT, needs_torch, typed_files


def test_torch_is_found_directly_and_through_the_repositorys_modules() -> None:
    assert needs_torch(ROOT / "training" / "model.py")  # import torch
    assert needs_torch(ROOT / "tests" / "training" / "hand_counter.py")  # from torch import nn
    # Through tests.training.hand_counter, two modules away.
    assert needs_torch(ROOT / "tests" / "core" / "test_decide.py")


def test_the_service_and_its_tests_need_no_torch() -> None:
    assert not needs_torch(ROOT / "app" / "main.py")
    assert not needs_torch(ROOT / "tests" / "app" / "conftest.py")
    assert not needs_torch(ROOT / "tests" / "app" / "client.py")


def test_mypy_without_torch_checks_the_service_and_skips_the_training_stack() -> None:
    torch_free = {
        path.relative_to(ROOT).as_posix() for path in typed_files() if not needs_torch(path)
    }
    assert {"app/main.py", "core/card.py", "tests/app/client.py"} <= torch_free
    assert "training/model.py" not in torch_free
    # A generated module is checked through its stub, never twice.
    assert "app/grpc/v2/grpc_predict_v2_pb2.pyi" in torch_free
    assert "app/grpc/v2/grpc_predict_v2_pb2.py" not in torch_free
