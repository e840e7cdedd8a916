"""Pins torch's CPU kernels for every test in this process, as the training CLI does.

Recipes train on 'portable' kernels by default (training.kernels); torch fixes its kernels at
its first operation, so the pin must come before any test runs one. Tests that need other
kernels run the CLI in a subprocess with its own environment.
"""

from training import kernels

kernels.pin("portable")
