"""Label Studio failures as one exception with a message a person can act on, and never the API key.

Split out of :mod:`florence_ui.labelstudio.client` (which re-exports both
names) so every way a call can fail (network, timeout, HTTP status, an answer
that is not Label Studio's) is mapped in one place that tests can read whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class LabelStudioError(RuntimeError):
    """A Label Studio call failed; the message is safe to show (no API key, no headers)."""

    def __init__(self, message: str, kind: str = "request", status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind  # unreachable | timeout | auth | server | request | not_found | project_gone
        self.status = status

    @property
    def fatal(self) -> bool:
        """No point trying the next image: the server is away, refuses us, or the project is gone."""
        return self.kind in ("unreachable", "timeout", "auth", "project_gone")


@contextmanager
def calls(settings: Any, what: str) -> Iterator[None]:
    """Turn SDK / network exceptions into one :class:`LabelStudioError` with a clear, key-free message.

    ``settings`` is an :class:`~florence_ui.labelstudio.client.LSSettings`
    (``base_url``, ``timeout``, ``redact``). The original exception is dropped
    (``from None``): an httpx exception carries the request, and so its
    ``Authorization`` header, and must not reach a traceback or a log.
    """
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    where = settings.base_url
    try:
        yield
    except LabelStudioError:
        raise
    except ApiError as exc:
        status = exc.status_code
        detail = _detail(exc.body)
        if status in (401, 403):
            msg = (f"Label Studio at {where} refused the API key ({status}: {detail or 'unauthorized'}). Use a "
                   "personal access token, or a legacy token where the organization allows legacy tokens.")  # fmt: skip
            kind = "auth"
        elif status == 404:
            msg, kind = f"{what}: not found on Label Studio at {where} ({detail or 'deleted?'}).", "not_found"
        elif status is not None and status >= 500:
            msg, kind = f"{what}: Label Studio at {where} failed with a server error ({status}). Try again.", "server"
        else:
            msg, kind = f"{what}: Label Studio rejected the request ({status}): {detail}", "request"
        raise LabelStudioError(settings.redact(msg), kind=kind, status=status) from None
    except httpx.TimeoutException:
        raise LabelStudioError(f"{what}: Label Studio at {where} did not answer within {settings.timeout:g}s.",
                               kind="timeout") from None  # fmt: skip
    except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.NetworkError):
        raise LabelStudioError(f"{what}: cannot reach Label Studio at {where}. Is it running, and is the URL right?",
                               kind="unreachable") from None  # fmt: skip
    except httpx.HTTPError as exc:
        raise LabelStudioError(settings.redact(f"{what}: {type(exc).__name__} talking to {where}."),
                               kind="unreachable") from None  # fmt: skip
    except ValueError as exc:  # an answer the SDK could not read (JSON / schema): not a Label Studio we know
        raise LabelStudioError(f"{what}: unexpected answer from {where} ({type(exc).__name__}); is it Label Studio?",
                               kind="request") from None  # fmt: skip


def _detail(body: Any) -> str:
    """The server's own explanation, short; HTML error pages (not Label Studio answering) say nothing useful."""
    if isinstance(body, dict):
        errors = body.get("validation_errors") or {}
        parts = [str(body.get("detail") or "")] + [f"{k}: {v}" for k, v in errors.items()]
        text = "; ".join(p for p in parts if p) or json.dumps(body)[:300]
    else:
        text = str(body or "").strip()
        if text.startswith("<"):
            text = "an HTML page, not Label Studio's API: is the URL right?"
    return text[:500]
