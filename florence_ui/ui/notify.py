"""One way for a page handler to report a failure: a toast plus the line written into the status box.

Expected failures (bad input, a refused edit) are shown as their own sentence;
anything else is logged with its traceback and shown as "something went wrong",
with what the person keeps said by the caller (``kept``).
"""

from __future__ import annotations

import logging

import gradio as gr

log = logging.getLogger(__name__)


def warn(exc: BaseException, expected: tuple[type[BaseException], ...], *, kept: str = "Your session is kept",
         duration: float = 6) -> str:  # fmt: skip
    """Toast ``exc`` and return the status-box line for it (``> ⚠️ ...``)."""
    if isinstance(exc, KeyError):
        message = str(exc.args[0]) if exc.args else "Not found"
    elif isinstance(exc, expected):
        message = str(exc)
    else:
        log.exception("Unexpected error in a UI handler")
        message = f"Something went wrong ({type(exc).__name__}: {exc}). {kept}; try again."
    gr.Warning(message, duration=duration)  # also written into the status line, so the toast can go soon
    return f"> ⚠️ {message}"
