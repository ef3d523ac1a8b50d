"""Hugging Face ZeroGPU support without depending on it.

On a ZeroGPU Space the ``spaces`` package is installed and GPU work must run
inside functions decorated with ``spaces.GPU``; everywhere else that package is
absent and the decorator must be a no-op. Model choice follows the hardware:
``large`` when a GPU is (or will be) there, ``base`` on CPU.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def spaces_module() -> Any | None:
    """The ``spaces`` package if it is installed, else None."""
    try:
        return importlib.import_module("spaces")
    except ImportError:
        return None


def on_zerogpu() -> bool:
    """True on a ZeroGPU Space (the platform sets SPACES_ZERO_GPU)."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true") and spaces_module() is not None


def gpu(fn: F | None = None, *, duration: int = 60) -> Any:
    """``spaces.GPU(duration=...)`` when available, else return ``fn`` unchanged."""

    def wrap(func: F) -> F:
        module = spaces_module()
        if module is None or not hasattr(module, "GPU"):
            return func
        decorated = module.GPU(duration=duration)(func)
        return functools.wraps(func)(decorated)

    return wrap(fn) if fn is not None else wrap


def default_model() -> str:
    """``large`` on a GPU (or ZeroGPU) machine, ``base`` on CPU; FLORENCE_MODEL overrides."""
    if os.environ.get("FLORENCE_MODEL"):
        return os.environ["FLORENCE_MODEL"]
    if on_zerogpu():
        return "large"
    try:
        import torch

        return "large" if torch.cuda.is_available() else "base"
    except ImportError:
        return "base"


def wrap_engine(engine: Any, duration: int = 60) -> Any:
    """Route the engine's model calls through ``spaces.GPU`` (no-op off ZeroGPU)."""
    engine.run = gpu(engine.run, duration=duration)
    return engine
