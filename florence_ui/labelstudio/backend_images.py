"""Where the ML backend may read a task's image from, and reading it (no request forgery).

Why this module exists: Label Studio sends the backend tasks whose ``data`` holds
an image URL that anyone who can import a task chose. Fetching whatever a task
names would let a task make the backend's machine request any address it can
reach (its own loopback, the cloud metadata endpoint, an intranet), and sending
the Label Studio key there would hand the key away. The rules, decided here only:

* A relative URL (``/data/upload/3/x.png``, ``/tasks/7/presign?...``) is read from
  the configured Label Studio (``ls_url``), with its key.
* An absolute ``http(s)`` URL is read only when its origin (scheme, host, port)
  is ``ls_url``'s (with the key) or one of ``allowed_hosts`` (each an origin such
  as ``https://images.example.com``, or a bare host name meaning either scheme
  and any port: *without* the key, which belongs to Label Studio alone).
* A ``data:image/...;base64,`` URL is decoded here, with no request at all.
* Anything else (other hosts, ``s3://``, ``file://``, ``gs://``, URLs with a user
  name) is refused before any connection: :class:`ImageRefused`, a sentence the
  backend logs (the task gets no prediction). The ``hostname`` a ``/setup`` call
  may carry is never used: only the operator's ``ls_url`` counts.

Label Studio's own requests go through the SDK's HTTP client
(:meth:`~florence_ui.labelstudio.client.LSSettings.client`): it sends a legacy
token as ``Authorization: Token <key>`` and refreshes a personal access token
(a JWT refresh token) into a bearer access token, and it never follows a
redirect (:meth:`~florence_ui.labelstudio.client.LSSettings.http_client`).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
from PIL import Image

from florence_ui.core.images import open_image
from florence_ui.errors import AccessRefused, ImageLoadError, LabelStudioError
from florence_ui.labelstudio.access import Origin, origin
from florence_ui.labelstudio.client import LSSettings
from florence_ui.labelstudio.errors import calls

log = logging.getLogger(__name__)


class ImageRefused(LabelStudioError):
    """A task's image URL the backend will not read (another host, another scheme): nothing was requested."""


@dataclass(frozen=True)
class AllowedHost:
    """One ``allowed_hosts`` entry: an origin, or a bare host (any scheme, any port)."""

    host: str
    where: Origin | None = None

    @classmethod
    def parse(cls, text: str) -> AllowedHost:
        text = str(text).strip()
        if "://" in text:
            where = origin(text, "An allowed image host")
            return cls(where.host, where)
        return cls(text.lower().rstrip(".").strip("[]"))

    def allows(self, where: Origin) -> bool:
        return where == self.where if self.where is not None else where.host == self.host


@dataclass
class ImageSource:
    """Reads task images from the configured Label Studio (and the allow-list only)."""

    settings: LSSettings
    allowed_hosts: tuple[AllowedHost, ...] = ()
    _sdk: Any = field(default=None, repr=False)
    _home: Origin | None = field(default=None, repr=False)

    @classmethod
    def of(cls, ls_url: str, ls_api_key: str = "", allowed_hosts: Iterable[str] = (), timeout: float = 30.0,
           ) -> ImageSource:  # fmt: skip
        settings = LSSettings(url=ls_url, api_key=ls_api_key or "", timeout=timeout, max_retries=1)
        source = cls(settings, tuple(AllowedHost.parse(h) for h in allowed_hosts if str(h).strip()))
        source._home = origin(settings.base_url, "The Label Studio URL of the ML backend")
        return source

    def where(self, url: str) -> tuple[str, bool]:
        """``(absolute URL, send the key)`` for a task's image URL, or :class:`ImageRefused` (nothing requested)."""
        text = (url or "").strip()
        if text.startswith("/") and not text.startswith("//"):
            return self.settings.base_url + text, True
        try:
            where = origin(text, "The task's image URL")
        except AccessRefused:
            raise ImageRefused(f"The task's image URL is not a Label Studio path nor an http(s) URL (it starts with "
                               f"{text[:12]!r}): only images stored in Label Studio at {self._home} are read.") from None  # fmt: skip
        if where == self._home:
            return text, True
        if any(host.allows(where) for host in self.allowed_hosts):
            return text, False
        raise ImageRefused(f"The task's image is on {where}, not on Label Studio at {self._home}: it was not "
                           "fetched (no request forgery). To allow that host, add it to the backend's "
                           "allowed hosts (--allow-host).")  # fmt: skip

    def read(self, url: str) -> Image.Image:
        """The image a task names, opened (``ImageRefused``, ``LabelStudioError`` or ``ImageLoadError`` otherwise)."""
        text = (url or "").strip()
        if text.startswith("data:"):
            return _data_url(text)
        absolute, with_key = self.where(text)
        if with_key:
            body = self._from_label_studio(absolute)
        else:
            body = self._from_allowed(absolute)
        return open_image(body, name="the task's image")

    def _from_label_studio(self, absolute: str) -> bytes:
        what = "Read the task's image"
        with calls(self.settings, what):
            if not (self.settings.api_key or "").strip():
                response = self.settings.http_client().get(absolute)
            else:
                if self._sdk is None:
                    self._sdk = self.settings.client()
                # the SDK's client adds the key (and refreshes a personal access token); it has no public download
                http = self._sdk._client_wrapper.httpx_client  # noqa: SLF001 - as upload_image does, see client.py
                path = absolute[len(self.settings.base_url) :].lstrip("/")
                response = http.request(path, method="GET")
            return _body(response, self.settings.base_url)

    def _from_allowed(self, absolute: str) -> bytes:
        with calls(self.settings, "Read the task's image"), httpx.Client(timeout=self.settings.timeout,
                                                                          follow_redirects=False) as http:  # fmt: skip
            return _body(http.get(absolute), str(origin(absolute)))


def _body(response: httpx.Response, where: str) -> bytes:
    if response.is_redirect:
        raise ImageRefused(f"The image server at {where} answered with a redirect ({response.status_code}); "
                           "redirects are not followed, so the key stays with Label Studio.")  # fmt: skip
    if response.status_code in (401, 403):
        raise LabelStudioError(f"{where} refused to give the task's image ({response.status_code}): give the ML "
                               "backend a valid Label Studio API key (--api-key or LABEL_STUDIO_API_KEY).",
                               status=response.status_code)  # fmt: skip
    if response.status_code >= 400:
        raise LabelStudioError(f"{where} answered {response.status_code} for the task's image.",
                               status=response.status_code)  # fmt: skip
    return response.content


def _data_url(text: str) -> Image.Image:
    head, _, payload = text.partition(",")
    if not head.startswith("data:image/") or ";base64" not in head:
        raise ImageRefused("The task's data: URL is not a base64 image (data:image/...;base64,...).")
    try:
        body = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageLoadError("The task's data: URL holds broken base64.") from None
    return open_image(body, name="the task's data: image")
