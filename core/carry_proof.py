"""What a carry proof established (CarryProof), with its boxes (Invariant): every state an
input covered by the proof reaches lies in its box. Made by core.certify.prove_carry; read by the
card (core.certificate) and by checks that the boxes hold the deployed states."""

from dataclasses import dataclass

from core.interval import Array

Box = tuple[Array, Array]  # (lo, hi), each (S,)


@dataclass(frozen=True)
class Invariant:
    """The boxes of a proof: every state an input covered by it reaches lies in its box.

    Keys are the last key_digits digits read, least recent first, zeros before the start.
    """

    key_digits: int
    carrying: list[Box]  # after 1, 2, ... nines, one box each
    closure: tuple[Box, int] | None  # a box holding every state after >= j nines, and j
    absorbed: Box  # (10^r, S): the digit that absorbed the carry, by key
    copying: list[Box]  # (10^r, S) each: copying step 1, 2, ..., transient
    steady: Box  # (10^r, S): every later copying step

    def boxes_along(self, digits: list[int]) -> list[Box]:
        """The box of each step's state for one input (digits least significant first, the
        extra zero step included); ValueError when its run of nines is not covered."""
        nines = next((i for i, d in enumerate(digits) if d != 9), len(digits))
        if nines == len(digits):
            raise ValueError("an input is never all nines: its extra zero step is a 0")
        closure_from = self.closure[1] if self.closure else None
        if nines > len(self.carrying) and (closure_from is None or nines < closure_from):
            raise ValueError(f"a run of {nines} nines is not covered by this proof")
        keys = 10**self.key_digits
        history = [0] * (self.key_digits - 1) + list(digits)
        boxes: list[Box] = []
        for step in range(len(digits)):
            if step < nines:
                if self.closure is not None and step + 1 >= self.closure[1]:
                    boxes.append(self.closure[0])
                else:
                    boxes.append(self.carrying[step])
                continue
            key = int("".join(map(str, history[step : step + self.key_digits]))) % keys
            since = step - nines  # copying steps since the carry was absorbed
            if since == 0:
                table = self.absorbed
            elif since <= len(self.copying):
                table = self.copying[since - 1]
            else:
                table = self.steady
            boxes.append((table[0][key], table[1][key]))
        return boxes


@dataclass(frozen=True)
class CarryProof:
    """What the proof established, and how."""

    key_digits: int  # copying boxes keyed by this many last digits
    transient: int  # copying steps with boxes of their own
    reliable: int | None  # proved K; None: every K (unbounded); -1: nothing proved
    margin: float | None  # smallest lower bound of the right digit's logit gap over every box
    iterations: int  # pushes of boxes through the cell, in all
    boxes: int  # boxes in the final invariant
    limit: int  # the largest finite K that was tried
    reason: str  # why it stopped: the box that failed, or the invariant found
    invariant: Invariant | None = None  # the boxes (None when nothing was tried)

    @property
    def unbounded(self) -> bool:
        return self.reliable is None
