"""The page's model picker: which Florence-2 checkpoints a visitor may switch to, and the swap itself.

Why it is opt-in: each checkpoint is 0.2–0.8 B parameters, a Space on small hardware holds one at a time,
and every visitor shares the process's one engine. So the operator lists the choices
(``FLORENCE_UI_MODEL_CHOICES=base,large,base-ft``, aliases or hub ids or local folders; unset or one entry
= no picker) and the page swaps the shared engine the :class:`~florence_ui.ui.controller.Controller` holds:
the old one is let go *before* the new one loads (one resident at a time), and if the new one fails to
load, the old one is loaded again. Loading goes through ``FlorenceEngine.from_pretrained`` like at start.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from typing import Any

from florence_ui.model.engine import FlorenceEngine
from florence_ui.model.loading import DTYPES, MODEL_ALIASES

#: the operator's list of checkpoints a visitor may switch to (comma-separated)
MODEL_CHOICES_ENV = "FLORENCE_UI_MODEL_CHOICES"

Progress = Callable[[float, str], None]


def model_choices(environ: dict[str, str] | None = None) -> list[str]:
    """The operator's checkpoints in their order, without repeats; empty = the picker stays hidden."""
    raw = (environ if environ is not None else os.environ).get(MODEL_CHOICES_ENV, "")
    out: list[str] = []
    for name in (part.strip() for part in raw.split(",")):
        if name and name not in out:
            out.append(name)
    return out


def model_id_of(choice: str) -> str:
    """The hub id (or folder) an alias stands for: how the engine names itself (``engine.model_id``)."""
    return MODEL_ALIASES.get(choice, choice)


def current_choice(engine: Any, choices: list[str]) -> str | None:
    """The entry of ``choices`` the engine was loaded from, if any."""
    return next((c for c in choices if model_id_of(c) == getattr(engine, "model_id", None)), None)


def picker_enabled(choices: list[str]) -> bool:
    return len(choices) > 1


def _dtype_of(engine: Any) -> str:
    """The dtype to load the next checkpoint in: the running one's when it is a loader name, else auto."""
    name = getattr(engine, "dtype_name", "auto")
    if str(name).startswith("int8"):
        return "int8"
    return name if name in DTYPES else "auto"


def swap_engine(
    controller: Any,
    choice: str,
    allowed: list[str],
    progress: Progress | None = None,
    *,
    load: Callable[..., Any] = FlorenceEngine.from_pretrained,
    wrap: Callable[[Any], Any] | None = None,
) -> Any:
    """Make ``controller.engine`` the checkpoint ``choice`` (one of ``allowed``); returns the new engine.

    The previous engine is dropped first and memory collected, so two models never sit in memory
    together; a failed load puts the previous checkpoint back and re-raises (the page shows why).
    ``wrap`` is applied to each loaded engine (the Space's ZeroGPU wrapper).
    """
    from florence_ui.model.engine import InputError

    progress = progress or (lambda _f, _d: None)
    if choice not in allowed:
        raise InputError(f"{choice!r} is not one of this server's models ({', '.join(allowed)}); the operator "
                         f"sets the list with {MODEL_CHOICES_ENV}.")  # fmt: skip
    old = controller.engine
    if model_id_of(choice) == old.model_id:
        progress(1.0, f"{choice} is already loaded.")
        return old
    device, dtype, previous = old.device, _dtype_of(old), old.model_id
    wrap = wrap or (lambda engine: engine)
    sam = getattr(old, "sam", None)  # the SAM segmenter stays: it does not depend on the Florence-2 checkpoint
    progress(0.05, f"Releasing {previous}…")
    controller.engine = None
    if callable(getattr(old, "release", None)):
        old.release()  # drops the weights and returns the GPU memory (torch lives in the model layer)
    del old
    gc.collect()
    extra = {"sam": sam} if sam is not None else {}
    progress(0.15, f"Loading {choice} on {device} (first use downloads it)…")
    try:
        engine = wrap(load(choice, device=device, dtype=dtype, **extra))
    except Exception:
        progress(0.6, f"Loading {choice} failed; loading {previous} again…")
        controller.engine = wrap(load(previous, device=device, dtype=dtype, **extra))
        raise
    controller.engine = engine
    progress(1.0, f"Loaded {engine.describe()}")
    return engine


__all__ = ["MODEL_CHOICES_ENV", "current_choice", "model_choices", "model_id_of", "picker_enabled", "swap_engine"]
