"""Every resource limit of the app in one place, each overridable from the environment.

florence-ui runs as a public Space and as a shared labelling server, so one
visitor must not be able to exhaust memory (a gigapixel upload, 10 000 boxes),
hold the model for minutes, or fill the queue. The defaults suit a single
GPU or a laptop; an operator changes them with ``FLORENCE_UI_*`` variables
(README, "Configuration") without touching code. Pure Python, no gradio.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields

from florence_ui.errors import LimitsError

#: environment variable → Limits field
ENV = {
    "FLORENCE_UI_MAX_PIXELS": "max_pixels",
    "FLORENCE_UI_MAX_BOXES": "max_boxes",
    "FLORENCE_UI_MAX_TEXT_CHARS": "max_text_chars",
    "FLORENCE_UI_MAX_FILE_SIZE": "max_file_size",
    "FLORENCE_UI_QUEUE_SIZE": "queue_size",
    "FLORENCE_UI_REQUEST_TIMEOUT": "request_timeout_s",
}


#: what gradio's max_file_size understands: a whole number and a unit
_SIZE = re.compile(r"\d+\s*(b|kb|mb|gb|tb)")


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how the server queues requests."""

    #: images above this many pixels are refused before they are decoded (48 MP phone photos pass)
    max_pixels: int = 50_000_000
    #: prompt boxes per region-task run; more are cut to this many, with a note
    max_boxes: int = 64
    #: characters of a text prompt (the model's own position limit is checked in tokens as well)
    max_text_chars: int = 2_000
    #: largest upload the web server accepts (gradio's ``max_file_size``)
    max_file_size: str = "50mb"
    #: requests waiting in the queue before new ones are turned away with "queue is full"
    queue_size: int = 64
    #: wall-clock budget of one ``generate`` call; an answer still running then is cut off and flagged
    request_timeout_s: float = 180.0

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Limits:
        """Defaults, overridden by any ``FLORENCE_UI_*`` variable that is set."""
        environ = os.environ if environ is None else environ
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, object] = {}
        for var, name in ENV.items():
            raw = environ.get(var, "").strip()
            if not raw:
                continue
            kind = types[name]
            if kind == "str" and not _SIZE.fullmatch(raw.lower()):
                raise LimitsError(f"{var}={raw!r} is not a size like 50mb, 2gb or 500kb.")
            try:
                value: object = raw if kind == "str" else (float(raw) if kind == "float" else int(raw))
            except ValueError as exc:
                what = "a whole number" if kind == "int" else "a number"
                raise LimitsError(f"{var}={raw!r} is not {what}.") from exc
            if kind != "str" and value <= 0:  # type: ignore[operator]
                raise LimitsError(f"{var} must be positive, got {raw!r}.")
            values[name] = value
        return cls(**values)  # type: ignore[arg-type]


def current() -> Limits:
    """The limits in force now (read from the environment on each call, so tests and operators can change them)."""
    return Limits.from_env()
