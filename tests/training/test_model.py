"""The model: shapes for every cell, and training noise that exists only in training mode."""

from typing import Any

import pytest
import torch

from training.model import GATE_PENALTY, Counter, ModelConfig, Probabilities, parameter_count


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_logits_and_probabilities_have_one_row_per_digit(cell: str) -> None:
    model = Counter(ModelConfig(cell=cell, hidden_size=8)).eval()  # type: ignore[arg-type]
    digits = torch.randint(0, 10, (3, 7))
    assert model(digits).shape == (3, 7, 10)
    probabilities = Probabilities(model)(digits)
    assert torch.allclose(probabilities.sum(-1), torch.ones(3, 7))


def test_h16_tanh_rnn_has_the_expected_parameter_count() -> None:
    # W_ih 16x10, W_hh 16x16, two biases 16, readout 10x16 + 10
    assert parameter_count(Counter(ModelConfig())) == 160 + 256 + 32 + 170


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_noisy_loop_without_noise_is_the_native_cell(cell: str) -> None:
    torch.manual_seed(0)
    model = Counter(ModelConfig(cell=cell, hidden_noise_std=0.0))  # type: ignore[arg-type]
    digits = torch.randint(0, 10, (4, 12))
    native = model.hidden_states(digits)
    loop = {"rnn": model._noisy_rnn, "gru": model._noisy_gru, "lstm": model._noisy_lstm}[cell]
    assert torch.allclose(loop(digits), native, atol=1e-6)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_noise_only_while_training(cell: str) -> None:
    torch.manual_seed(0)
    model = Counter(ModelConfig(cell=cell, hidden_noise_std=1.0))  # type: ignore[arg-type]
    digits = torch.randint(0, 10, (2, 5))
    model.train()
    assert not torch.equal(model(digits), model(digits))
    model.eval()
    assert torch.equal(model(digits), model(digits))
    assert torch.equal(model.hidden_states(digits), model.cell(_onehot(digits))[0])


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_noise_is_seeded_by_torchs_generator(cell: str) -> None:
    model = Counter(ModelConfig(cell=cell, hidden_noise_std=1.0)).train()  # type: ignore[arg-type]
    digits = torch.randint(0, 10, (2, 5))
    torch.manual_seed(7)
    first = model(digits)
    torch.manual_seed(7)
    assert torch.equal(model(digits), first)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_noise_gradients_reach_the_native_cells_parameters(cell: str) -> None:
    model = Counter(ModelConfig(cell=cell, hidden_noise_std=1.0)).train()  # type: ignore[arg-type]
    model(torch.randint(0, 10, (2, 5))).sum().backward()
    for name, parameter in model.cell.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_state_noise_alone_runs_the_noisy_loop_while_training(cell: str) -> None:
    torch.manual_seed(0)
    model = Counter(ModelConfig(cell=cell, state_noise_std=0.3))  # type: ignore[arg-type]
    digits = torch.randint(0, 10, (2, 6))
    model.train()
    assert not torch.equal(model(digits), model(digits))
    model.eval()
    assert torch.equal(model.hidden_states(digits), model.cell(_onehot(digits))[0])


def test_the_cell_state_penalty_is_the_mean_square_of_the_lstms_cell_states() -> None:
    torch.manual_seed(0)
    model = Counter(ModelConfig(cell="lstm", hidden_size=4, cell_state_penalty=0.5)).train()
    digits = torch.randint(0, 10, (3, 7))
    model(digits)
    state = None
    squares = []
    with torch.no_grad():
        for t in range(7):  # the native cell, one step at a time, for its c
            _, state = model.cell(_onehot(digits[:, t : t + 1]), state)
            squares.append(state[1].pow(2).mean())
    penalty = model.take_penalty()
    assert isinstance(penalty, torch.Tensor)
    assert torch.allclose(penalty, 0.5 * torch.stack(squares).mean(), atol=1e-6)
    assert model.take_penalty() == 0.0  # taken once
    model.eval()
    model(digits)
    assert model.take_penalty() == 0.0  # none outside training


def test_the_cell_state_penalty_reaches_the_loss_gradient() -> None:
    torch.manual_seed(0)
    model = Counter(ModelConfig(cell="lstm", hidden_size=4, cell_state_penalty=1.0)).train()
    model(torch.randint(0, 10, (2, 5)))
    penalty = model.take_penalty()
    assert isinstance(penalty, torch.Tensor)
    penalty.backward()  # type: ignore[no-untyped-call]
    assert model.cell.weight_hh_l0.grad is not None
    assert model.readout.weight.grad is None  # it is about c alone


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_a_gate_past_the_limit_pays_its_excess_squared_in_training_only(cell: str) -> None:
    """The limited gate is PyTorch's second block in either cell: a GRU's update gate z (gates
    r, z, n), an LSTM's forget gate f (i, f, g, o). Its recurrent bias at 20 puts every such
    pre-activation near 20, far past the limit; the penalty is GATE_PENALTY times the mean
    squared excess, and nothing once the gates are back under it or outside training."""
    torch.manual_seed(0)
    size, limit = 4, 9.0 if cell == "gru" else 2.0
    model = Counter(ModelConfig(cell=cell, hidden_size=size, gate_limit=limit)).train()  # type: ignore[arg-type]
    param = model.cell.get_parameter
    digits = torch.randint(0, 10, (3, 7))
    with torch.no_grad():
        param("bias_hh_l0")[size : 2 * size] = 20.0
    model(digits)
    state: Any = None
    excess = []
    with torch.no_grad():
        for t in range(7):  # the native cell, one step at a time, for the gate's pre-activations
            # the native cell's state: h (1, B, H), or (h, c) for an LSTM
            if state is None:
                h = torch.zeros(3, size)
            else:
                h = (state[0] if cell == "lstm" else state)[0]
            pre = _onehot(digits[:, t]) @ param("weight_ih_l0").T + param("bias_ih_l0")
            pre = pre + h @ param("weight_hh_l0").T + param("bias_hh_l0")
            excess.append(torch.relu(pre[:, size : 2 * size] - limit).pow(2).mean())
            _, state = model.cell(_onehot(digits[:, t : t + 1]), state)
    penalty = model.take_penalty()
    assert isinstance(penalty, torch.Tensor)
    assert torch.allclose(penalty, GATE_PENALTY * torch.stack(excess).mean(), rtol=1e-5)
    assert penalty > 0.5  # about 0.01 x 11^2 (GRU) or 18^2 (LSTM)
    penalty.backward()  # type: ignore[no-untyped-call]
    gradient = param("bias_hh_l0").grad
    assert gradient is not None
    assert gradient[size : 2 * size].min() > 0  # it pushes the gate's bias down
    with torch.no_grad():
        param("bias_hh_l0")[size : 2 * size] = -20.0
    model(digits)
    assert model.take_penalty() == 0.0  # every gate under the limit
    model.eval()
    with torch.no_grad():
        param("bias_hh_l0")[size : 2 * size] = 20.0
    model(digits)
    assert model.take_penalty() == 0.0  # none outside training


def test_an_lstm_pays_its_cell_state_and_its_forget_gate_together() -> None:
    torch.manual_seed(0)
    digits = torch.randint(0, 10, (3, 7))
    taken = []
    for config in (
        {"cell_state_penalty": 0.5},
        {"gate_limit": -5.0},
        {"cell_state_penalty": 0.5, "gate_limit": -5.0},
    ):
        torch.manual_seed(1)
        model = Counter(ModelConfig(cell="lstm", hidden_size=4, **config)).train()  # type: ignore[arg-type]
        model(digits)
        penalty = model.take_penalty()
        assert isinstance(penalty, torch.Tensor)
        assert penalty > 0
        taken.append(penalty)
    assert torch.allclose(taken[2], taken[0] + taken[1], rtol=1e-6)


def _onehot(digits: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot(digits, 10).to(torch.float32)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cell": "transformer"},
        {"hidden_size": 0},
        {"hidden_noise_std": -1.0},
        {"state_noise_std": -0.1},
        {"cell_state_penalty": -1.0},
        {"cell": "gru", "cell_state_penalty": 0.01},
        {"cell": "rnn", "gate_limit": 9.0},
    ],
)
def test_bad_configs_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"must|only|is for"):
        ModelConfig(**kwargs)  # type: ignore[arg-type]
