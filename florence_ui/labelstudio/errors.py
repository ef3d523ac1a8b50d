"""Every way a Label Studio call can fail, mapped to one :class:`LabelStudioError` a person can act on.

The exception itself (and its :class:`LabelStudioErrorKind`) lives in the one
tree of :mod:`florence_ui.errors`; this module is the Label Studio-specific
part: :func:`calls` turns network, timeout, HTTP status and not-Label-Studio
answers into that error, with a message that never holds the API key, in one
place that tests can read whole. :mod:`florence_ui.labelstudio.client`
re-exports both names.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from florence_ui.errors import LabelStudioError, LabelStudioErrorKind
from florence_ui.errors import LabelStudioErrorKind as Kind


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
            kind = Kind.AUTH
        elif status == 404:
            msg, kind = f"{what}: not found on Label Studio at {where} ({detail or 'deleted?'}).", Kind.NOT_FOUND
        elif status is not None and status >= 500:
            msg = f"{what}: Label Studio at {where} failed with a server error ({status}). Try again."
            kind = Kind.SERVER
        else:
            msg, kind = f"{what}: Label Studio rejected the request ({status}): {detail}", Kind.REQUEST
        raise LabelStudioError(settings.redact(msg), kind=kind, status=status) from None
    except httpx.TimeoutException:
        raise LabelStudioError(f"{what}: Label Studio at {where} did not answer within {settings.timeout:g}s.",
                               kind=Kind.TIMEOUT) from None  # fmt: skip
    except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.NetworkError):
        raise LabelStudioError(f"{what}: cannot reach Label Studio at {where}. Is it running, and is the URL right?",
                               kind=Kind.UNREACHABLE) from None  # fmt: skip
    except httpx.HTTPError as exc:
        raise LabelStudioError(settings.redact(f"{what}: {type(exc).__name__} talking to {where}."),
                               kind=Kind.UNREACHABLE) from None  # fmt: skip
    except ValueError as exc:  # an answer the SDK could not read (JSON / schema): not a Label Studio we know
        raise LabelStudioError(f"{what}: unexpected answer from {where} ({type(exc).__name__}); is it Label Studio?",
                               kind=Kind.REQUEST) from None  # fmt: skip


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


__all__ = ["LabelStudioError", "LabelStudioErrorKind", "calls"]
