"""The network: a recurrent cell over one-hot digits plus a linear readout to 10 classes.

Reads top to bottom: the config, then the model. The cell is PyTorch's own `nn.RNN` (the post's
tanh cell), `nn.LSTM` or `nn.GRU`, so the exported ONNX graph holds the native recurrent op.
Training noise on the pre-activations (the robust recipe) runs a manual loop over the cell's own
parameters (`nn.RNN`'s, `nn.GRU`'s or `nn.LSTM`'s), noise on every gate; evaluation always
takes the native path.
"""

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.nn import functional

Cell = Literal["rnn", "lstm", "gru"]
DIGITS = 10
GATE_PENALTY = 0.01


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and training-time noise of a `Counter`."""

    cell: Cell = "rnn"
    hidden_size: int = 16
    nonlinearity: Literal["tanh", "relu"] = "tanh"
    # Std of Gaussian noise added to the cell's pre-activations (every gate of a GRU or LSTM),
    # in training mode only.
    hidden_noise_std: float = 0.0
    # Std of Gaussian noise added to the state after every step (h, and an LSTM's c), which
    # the readout and the next step then read, in training mode only.
    state_noise_std: float = 0.0
    # LSTM only: weight of the mean square of the cell state c over every step, added to the
    # loss while training. Without it an LSTM lets c count up for ever (only tanh(c) is read),
    # and no box of cell states holds its own image.
    cell_state_penalty: float = 0.0
    # GRU and LSTM: the pre-activations of a GRU's update gate or an LSTM's forget gate past
    # this pay their excess squared in the loss (GATE_PENALTY times its mean), in training
    # mode only; None: no penalty.
    gate_limit: float | None = None

    def __post_init__(self) -> None:
        if self.cell not in ("rnn", "lstm", "gru"):
            raise ValueError(f"cell must be rnn, lstm or gru, got {self.cell!r}")
        if self.hidden_size < 1:
            raise ValueError(f"hidden_size must be >= 1, got {self.hidden_size}")
        if self.hidden_noise_std < 0:
            raise ValueError(f"hidden_noise_std must be >= 0, got {self.hidden_noise_std}")
        if self.state_noise_std < 0:
            raise ValueError(f"state_noise_std must be >= 0, got {self.state_noise_std}")
        if self.cell_state_penalty < 0:
            raise ValueError(f"cell_state_penalty must be >= 0, got {self.cell_state_penalty}")
        if self.cell_state_penalty > 0 and self.cell != "lstm":
            raise ValueError("cell_state_penalty is for the LSTM's cell state only")
        if self.gate_limit is not None and self.cell == "rnn":
            raise ValueError("gate_limit is for a GRU's update gate or an LSTM's forget gate")

    @property
    def noisy(self) -> bool:
        """Whether training runs the manual loop (noise, or a penalty on cell state or gates)."""
        return (
            self.hidden_noise_std > 0
            or self.state_noise_std > 0
            or self.cell_state_penalty > 0
            or self.gate_limit is not None
        )


class Counter(nn.Module):
    """Adds one to a number: digits (least significant first) -> logits of the answer's digits.

    The job of the cell is to carry: its hidden state must remember "a 1 is still to be added"
    for as long as nines keep coming. The readout maps each hidden state to the output digit.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        size = config.hidden_size
        self.cell: nn.RNN | nn.LSTM | nn.GRU
        if config.cell == "rnn":
            self.cell = nn.RNN(DIGITS, size, nonlinearity=config.nonlinearity, batch_first=True)
        elif config.cell == "lstm":
            self.cell = nn.LSTM(DIGITS, size, batch_first=True)
        else:
            self.cell = nn.GRU(DIGITS, size, batch_first=True)
        self.readout = nn.Linear(size, DIGITS)
        # The penalties of the last training forward pass (see take_penalty).
        self._penalty: torch.Tensor | None = None

    def hidden_states(self, digits: torch.Tensor) -> torch.Tensor:
        """int64 [B, T] -> the cell's outputs, float32 [B, T, H]."""
        if self.training and self.config.noisy:
            noisy = {"rnn": self._noisy_rnn, "gru": self._noisy_gru, "lstm": self._noisy_lstm}
            return noisy[self.config.cell](digits)
        onehot = functional.one_hot(digits, DIGITS).to(torch.float32)  # (B, T, 10)
        states: torch.Tensor = self.cell(onehot)[0]  # (B, T, H)
        return states

    def forward(self, digits: torch.Tensor) -> torch.Tensor:
        """int64 [B, T] -> logits float32 [B, T, 10]."""
        logits: torch.Tensor = self.readout(self.hidden_states(digits))
        return logits

    def take_penalty(self) -> torch.Tensor | float:
        """The weighted penalties (cell state, gates) of the last training forward pass (0.0 if
        none), for the loss; taken once."""
        penalty, self._penalty = self._penalty, None
        return 0.0 if penalty is None else penalty

    def _noisy_rnn(self, digits: torch.Tensor) -> torch.Tensor:
        """The RNN step by step with noise on its pre-activations, on nn.RNN's own weights."""
        weight = self.cell.get_parameter
        act = torch.tanh if self.config.nonlinearity == "tanh" else torch.relu
        # One-hot times W_ih is a column lookup: (B, T, H), biases folded in once.
        drive = weight("weight_ih_l0").t()[digits] + weight("bias_ih_l0") + weight("bias_hh_l0")
        drive = drive + self.config.hidden_noise_std * torch.randn_like(drive)
        recurrent = weight("weight_hh_l0").t()  # (H, H)
        h = drive.new_zeros(digits.shape[0], self.config.hidden_size)  # (B, H)
        states = []
        for t in range(digits.shape[1]):
            h = self._perturbed(act(drive[:, t] + h @ recurrent))
            states.append(h)
        return torch.stack(states, dim=1)  # (B, T, H)

    def _perturbed(self, state: torch.Tensor) -> torch.Tensor:
        """The state with the training noise on it (none drawn when its std is 0)."""
        std = self.config.state_noise_std
        return state + std * torch.randn_like(state) if std > 0 else state

    def _drive(self, digits: torch.Tensor) -> torch.Tensor:
        """The input half of every gate's pre-activation, noise included: (B, T, G H).

        One-hot times W_ih is a column lookup; the input bias is folded in. The noise is drawn
        for every step at once, from torch's seeded generator, as in _noisy_rnn.
        """
        weight = self.cell.get_parameter
        drive = weight("weight_ih_l0").t()[digits] + weight("bias_ih_l0")
        return drive + self.config.hidden_noise_std * torch.randn_like(drive)

    def _noisy_gru(self, digits: torch.Tensor) -> torch.Tensor:
        """nn.GRU step by step with noise on its pre-activations, on its own weights.

        PyTorch's gates r, z, n: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), so the noise on
        n's pre-activation comes with its input half.
        """
        weight = self.cell.get_parameter
        drive = self._drive(digits)  # (B, T, 3H)
        recurrent, bias = weight("weight_hh_l0").t(), weight("bias_hh_l0")  # (H, 3H), (3H,)
        size = self.config.hidden_size
        h = drive.new_zeros(digits.shape[0], size)  # (B, H)
        states, gates = [], []
        for t in range(digits.shape[1]):
            x_r, x_z, x_n = torch.chunk(drive[:, t], 3, dim=1)
            h_r, h_z, h_n = torch.chunk(h @ recurrent + bias, 3, dim=1)
            r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
            h = self._perturbed((1 - z) * torch.tanh(x_n + r * h_n) + z * h)
            states.append(h)
            gates.append(x_z + h_z)
        self._penalty = self._gate_penalty(gates)
        return torch.stack(states, dim=1)  # (B, T, H)

    def _gate_penalty(self, gates: list[torch.Tensor]) -> torch.Tensor | None:
        """GATE_PENALTY x the mean squared excess of the limited gate's pre-activations (T of
        (B, H): a GRU's update gate, an LSTM's forget gate) past gate_limit, or None without a
        limit."""
        limit = self.config.gate_limit
        if limit is None:
            return None
        return GATE_PENALTY * torch.relu(torch.stack(gates) - limit).pow(2).mean()

    def _noisy_lstm(self, digits: torch.Tensor) -> torch.Tensor:
        """nn.LSTM step by step with noise on its pre-activations, on its own weights."""
        weight = self.cell.get_parameter
        drive = self._drive(digits)  # (B, T, 4H): PyTorch's gates i, f, g, o
        recurrent, bias = weight("weight_hh_l0").t(), weight("bias_hh_l0")  # (H, 4H), (4H,)
        size = self.config.hidden_size
        h = drive.new_zeros(digits.shape[0], size)  # (B, H)
        c = torch.zeros_like(h)
        states, cells, gates = [], [], []
        for t in range(digits.shape[1]):
            i, f, g, o = torch.chunk(drive[:, t] + h @ recurrent + bias, 4, dim=1)
            gates.append(f)
            c = self._perturbed(torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g))
            h = self._perturbed(torch.sigmoid(o) * torch.tanh(c))
            states.append(h)
            cells.append(c)
        penalty = self._gate_penalty(gates)
        if self.config.cell_state_penalty > 0:
            cost = self.config.cell_state_penalty * torch.stack(cells).pow(2).mean()
            penalty = cost if penalty is None else penalty + cost
        self._penalty = penalty
        return torch.stack(states, dim=1)  # (B, T, H)


class Probabilities(nn.Module):
    """The exported graph: digits int64 [B, T] -> softmax probabilities float32 [B, T, 10]."""

    def __init__(self, counter: Counter) -> None:
        super().__init__()
        self.counter = counter

    def forward(self, digits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.counter(digits), dim=-1)


def parameter_count(model: nn.Module) -> int:
    """Trainable parameters, as the card records them."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class TorchCarryEngine:
    """`training.carry_scan.CarryEngine` on the torch model (any cell, LSTM included).

    The state is the cell's hidden state, (rows, H); for the LSTM, h and c side by side,
    (rows, 2H), because the ONNX LSTM op cannot resume from a given step's cell state.
    """

    def __init__(self, counter: Counter) -> None:
        self.counter = counter.eval()
        self.name = f"torch {torch.__version__}"
        self._size = counter.config.hidden_size
        self._lstm = counter.config.cell == "lstm"

    def initial_state(self) -> npt.NDArray[np.float32]:
        width = 2 * self._size if self._lstm else self._size
        return np.zeros((1, width), dtype=np.float32)

    def _state(self, rows: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(N, state) -> the cell's initial state argument, (1, N, H) or a pair of them."""
        if self._lstm:
            return rows[None, :, : self._size].contiguous(), rows[
                None, :, self._size :
            ].contiguous()
        return rows[None].contiguous()

    @torch.no_grad()
    def _run(
        self, states: npt.NDArray[np.float32], digits: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], torch.Tensor]:
        """(N, state), (N, T) -> output digits (N, T) and the state after the last step."""
        onehot = functional.one_hot(torch.from_numpy(digits), DIGITS).to(
            torch.float32
        )  # (N, T, 10)
        outputs, last = self.counter.cell(onehot, self._state(torch.from_numpy(states)))
        chosen = self.counter.readout(outputs).argmax(-1)  # (N, T)
        final = torch.cat(last, dim=-1) if isinstance(last, tuple) else last  # (1, N, state)
        return chosen.numpy().astype(np.int64), final[0]

    def run_nines(self, k: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        if not self._lstm:
            # One native pass; the RNN/GRU output at each step is its hidden state.
            onehot = functional.one_hot(torch.full((1, k), 9), DIGITS).to(torch.float32)
            with torch.no_grad():
                outputs, _ = self.counter.cell(onehot)  # (1, k, H)
                chosen = self.counter.readout(outputs[0]).argmax(-1)
            return outputs[0].numpy(), chosen.numpy().astype(np.int64)
        # LSTM: step by step, keeping c after every nine.
        states = np.zeros((k, 2 * self._size), dtype=np.float32)
        digits = np.zeros(k, dtype=np.int64)
        state = self.initial_state()
        nine = np.full((1, 1), 9, dtype=np.int64)
        for step in range(k):
            chosen, last = self._run(state, nine)
            state = last.numpy()
            states[step], digits[step] = state[0], chosen[0, 0]
        return states, digits

    def step(
        self, states: npt.NDArray[np.float32], digits: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        chosen, last = self._run(states, digits[:, None])
        return chosen[:, 0], last.numpy()
