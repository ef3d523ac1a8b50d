"""Hugging Face ZeroGPU support without depending on it.

On a ZeroGPU Space the ``spaces`` package is installed and GPU work must run
inside functions decorated with ``spaces.GPU``; everywhere else that package is
absent and the decorator must be a no-op. Model choice follows the hardware:
``large`` when a GPU is (or will be) there, ``base`` on CPU.

A ZeroGPU slot is a hard deadline: a call still running when its ``duration``
ends is killed by the platform and the visitor sees a platform error. So each
call asks for a slot sized to its own work (:func:`slot_seconds`: answer
length × beams × boxes, ZeroGPU's dynamic ``duration``), and the engine's time
limit for that call is set :data:`SLOT_MARGIN_S` below the slot, so a long
answer ends as "cut off at the time limit" with what it had, never as a crash.

The image-feature cache: ZeroGPU runs each call in a worker forked for it, so
whatever the call caches there is gone afterwards; on ZeroGPU a second prompt
on the same image pays the vision tower again (README, "Hugging Face Space").
"""

from __future__ import annotations

import functools
import importlib
import math
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


#: seconds of a slot kept free for what is not generation (moving the image, the vision tower, the answer back)
SLOT_MARGIN_S = 10
#: the shortest slot asked for, and the longest unless ``FLORENCE_UI_ZEROGPU_MAX_S`` says otherwise
MIN_SLOT_S, MAX_SLOT_S = 20, 120
#: one decoding step of up to :data:`ROWS_PER_STEP` rows on a ZeroGPU slice (Florence-2-large, fp16), with headroom
SECONDS_PER_STEP, ROWS_PER_STEP = 0.03, 8


def max_slot_seconds() -> int:
    """The longest slot this Space asks for: ``FLORENCE_UI_ZEROGPU_MAX_S`` (default 120)."""
    raw = os.environ.get("FLORENCE_UI_ZEROGPU_MAX_S", "").strip()
    try:
        value = int(raw) if raw else MAX_SLOT_S
    except ValueError:
        value = MAX_SLOT_S
    return max(MIN_SLOT_S, value)


def texts_slot_seconds(*args: Any, **kwargs: Any) -> int:
    """``duration`` for one ``engine.run_texts(image, task, texts, settings=…)`` call: one row per text, like boxes."""
    texts = kwargs.get("texts", args[2] if len(args) > 2 else None)
    count = 1 if isinstance(texts, str) or not texts else len(texts)
    return slot_seconds(kwargs.get("image"), None, None, [None] * count, settings=kwargs.get("settings"))


def slot_seconds(*args: Any, **kwargs: Any) -> int:
    """ZeroGPU's dynamic ``duration`` for one ``engine.run(image, task, text, boxes, settings=…)`` call.

    Called by ``spaces.GPU`` with the run's own arguments: the worst case of
    the answer (``max_new_tokens`` × beams × boxes decoded together) plus the
    margin, between :data:`MIN_SLOT_S` and :func:`max_slot_seconds`. A short
    answer asks for a short slot, which ZeroGPU queues sooner.
    """
    from florence_ui.model.engine import GenerationSettings

    settings = kwargs.get("settings") or GenerationSettings()
    tokens = kwargs.get("max_new_tokens") or settings.max_new_tokens
    beams = kwargs.get("num_beams") or settings.num_beams
    boxes = kwargs.get("boxes", args[3] if len(args) > 3 else None)
    rows = max(1, len(boxes) if boxes else 1) * max(1, int(beams))
    # rows decode in parallel on a GPU; past a few rows each step gets slower, roughly with the rows
    work = int(tokens) * SECONDS_PER_STEP * max(1.0, rows / ROWS_PER_STEP)
    return int(min(max_slot_seconds(), max(MIN_SLOT_S, math.ceil(work + SLOT_MARGIN_S))))


def wrap_engine(engine: Any, duration: int | None = None) -> Any:
    """Route the engine's model calls through ``spaces.GPU`` (no-op off ZeroGPU).

    Each call's slot is :func:`slot_seconds` of its arguments (or the fixed
    ``duration``), and its generation time limit is the slot less
    :data:`SLOT_MARGIN_S`, below the operator's ``FLORENCE_UI_REQUEST_TIMEOUT``.
    """
    run = engine.run
    size: Callable[..., int] = (lambda *a, **k: int(duration)) if duration else slot_seconds

    @functools.wraps(run)
    def run_in_slot(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("time_limit", max(1, size(*args, **kwargs) - SLOT_MARGIN_S))
        return run(*args, **kwargs)

    run_texts = engine.run_texts
    texts_size: Callable[..., int] = (lambda *a, **k: int(duration)) if duration else texts_slot_seconds

    @functools.wraps(run_texts)
    def run_texts_in_slot(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("time_limit", max(1, texts_size(*args, **kwargs) - SLOT_MARGIN_S))
        return run_texts(*args, **kwargs)

    if spaces_module() is None or not hasattr(spaces_module(), "GPU"):
        return engine  # not on a Space: the engine's own time limit holds
    engine.run = gpu(run_in_slot, duration=size)
    # detect-the-label-set and the MCP detect_classes tool ask one text per class in one call: a slot too
    engine.run_texts = gpu(run_texts_in_slot, duration=texts_size)
    return engine
