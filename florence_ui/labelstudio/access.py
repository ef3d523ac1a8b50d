"""Which Label Studio a request may reach, and with whose API key: the one place that decides.

Why this module exists: the Label Studio tab takes a URL and a key from any
visitor, while the server may hold the operator's own ``LABEL_STUDIO_URL`` /
``LABEL_STUDIO_API_KEY``. Mixing the two sent the operator's key to whatever
URL a visitor typed (issue 12). The rules, decided here and nowhere else
(:func:`decide`), are:

* **The operator's key only goes to the operator's URL.** ``LABEL_STUDIO_API_KEY``
  is sent only when the URL is ``LABEL_STUDIO_URL`` itself (same origin:
  scheme, host, port; ``http://LS:8080/`` is ``http://ls:8080``), and then the
  request goes to ``LABEL_STUDIO_URL`` exactly, not to a path the visitor
  chose on that host. Any other URL needs the visitor's own key; without one,
  no request is made at all.
* **A visitor's key is bound to the origin it was typed for.** A key typed
  for server X is kept for X only: typing URL Y later with an empty key box
  is refused (type the key for Y), so a key is never carried to a server
  the visitor did not pair it with.
* **No server-side request forgery.** When the app is reachable from other
  machines (it listens beyond loopback, has a share link, or runs as a
  Space: ``SPACE_ID``), a typed URL whose host resolves to any loopback,
  private, link-local, reserved, multicast or unspecified address (IPv4,
  IPv6, IPv4-mapped / NAT64 / 6to4 forms) is refused, unless the operator
  sets ``FLORENCE_UI_LS_ALLOW_PRIVATE=1``. Schemes other than http(s) and
  URLs with a user name or password are always refused. The HTTP client
  (:meth:`~florence_ui.labelstudio.client.LSSettings.client`) re-checks each
  address it connects to (a name that changes its answer between the check
  and the request) and never follows redirects.
* **A lock.** ``FLORENCE_UI_LS_LOCKED=1`` lets the tab use only the
  configured server; it is on by default on a Space with both Label Studio
  variables set (``FLORENCE_UI_LS_LOCKED=0`` turns it off).

The environment is read at call time: the embedded local Label Studio
(:mod:`florence_ui.labelstudio.server`) sets ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY``
after the app has started. Pure: no gradio, no I/O but name resolution.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import httpx

from florence_ui.errors import AccessRefused, LabelStudioErrorKind

DEFAULT_URL = "http://localhost:8080"  # the SDK's and the CLI's default (labelstudio_client.DEFAULT_URL)
LOCKED_ENV = "FLORENCE_UI_LS_LOCKED"
ALLOW_PRIVATE_ENV = "FLORENCE_UI_LS_ALLOW_PRIVATE"
DEFAULT_PORTS = {"http": 80, "https": 443}
_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

Resolver = Callable[..., Iterable[tuple]]  # socket.getaddrinfo's shape


@dataclass(frozen=True, order=True)
class Origin:
    """Scheme, lower-case host (no trailing dot) and port, default ports filled in."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}" + ("" if DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}")


def origin(url: str, what: str = "The Label Studio URL") -> Origin:
    """The origin of ``url``, parsed by httpx (the parser the request itself uses, so no parser mismatch).

    Raises :class:`AccessRefused` for anything that is not a plain ``http(s)://host[:port]`` URL. The
    message never repeats the URL (a key pasted into the URL box must not come back).
    """
    text = (url or "").strip()
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError):
        parsed = None
    scheme = parsed.scheme.lower() if parsed is not None else ""
    if scheme not in DEFAULT_PORTS:
        raise AccessRefused(f"{what} must start with http:// or https:// (for example http://localhost:8080).")
    if parsed.userinfo:
        raise AccessRefused(f"{what} must not hold a user name or password: give the API key in the key box.")
    host = parsed.host.lower().rstrip(".")
    port = parsed.port or DEFAULT_PORTS[scheme]
    if not host or "%" in host or not 0 < port < 65536:
        raise AccessRefused(f"{what} has no valid host and port: use http(s)://host[:port].")
    return Origin(scheme, host, port)


def same_origin(a: str, b: str) -> bool:
    try:
        return origin(a) == origin(b)
    except AccessRefused:
        return False


# ---- where the app is reachable from ------------------------------------------------------------------
def _flag(environ: Mapping[str, str], name: str) -> bool | None:
    value = (environ.get(name) or "").strip().lower()
    if not value:
        return None
    return value not in _OFF  # an unreadable value counts as on: the safe side for both flags


def is_loopback_host(host: str | None) -> bool:
    name = (host or "").strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Exposure:
    """Who can reach the app: only this machine (loopback), or others (any other host, a share link, a Space)."""

    listen_host: str = "127.0.0.1"
    share: bool = False
    space: bool = False

    @property
    def public(self) -> bool:
        return self.space or self.share or not is_loopback_host(self.listen_host)

    @classmethod
    def of(cls, listen_host: str | None = None, share: bool = False,
           environ: Mapping[str, str] | None = None) -> Exposure:  # fmt: skip
        """``listen_host`` as given to ``launch`` (None: gradio's own default, ``GRADIO_SERVER_NAME`` or 127.0.0.1)."""
        env = os.environ if environ is None else environ
        host = listen_host or env.get("GRADIO_SERVER_NAME") or "127.0.0.1"
        return cls(host, bool(share), bool(env.get("SPACE_ID")))


def locked(environ: Mapping[str, str] | None = None) -> bool:
    """``FLORENCE_UI_LS_LOCKED``; unset: on for a Space with ``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY`` set."""
    env = os.environ if environ is None else environ
    flag = _flag(env, LOCKED_ENV)
    if flag is not None:
        return flag
    return bool(env.get("SPACE_ID") and env.get("LABEL_STUDIO_URL") and env.get("LABEL_STUDIO_API_KEY"))


def allow_private(environ: Mapping[str, str] | None = None) -> bool:
    return bool(_flag(os.environ if environ is None else environ, ALLOW_PRIVATE_ENV))


# ---- addresses -------------------------------------------------------------------------------------------
def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def is_public_address(text: str) -> bool:
    """A global unicast address (IPv6 forms that carry an IPv4 address are judged by that address)."""
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_v4(address)
        if inner is not None and not is_public_address(str(inner)):
            return False
    bad = (address.is_private or address.is_loopback or address.is_link_local or address.is_multicast
           or address.is_reserved or address.is_unspecified or not address.is_global)  # fmt: skip
    return not bad


def private_refusal(where: Origin) -> AccessRefused:
    return AccessRefused(
        f"Label Studio at {where} is on a loopback, private or link-local address, and this app is reachable "
        "from other machines, so a typed URL may only reach public addresses. To use that server, the operator "
        f"sets it as LABEL_STUDIO_URL, or allows private addresses with {ALLOW_PRIVATE_ENV}=1.",
        kind=LabelStudioErrorKind.PRIVATE,
    )


def public_addresses(host: str, port: int, resolve: Resolver = socket.getaddrinfo,
                     where: Origin | None = None) -> list[str]:  # fmt: skip
    """Every address ``host`` resolves to, all public, or :class:`AccessRefused` (nothing is connected)."""
    try:
        infos = list(resolve(host, port, type=socket.SOCK_STREAM))
    except (socket.gaierror, UnicodeError, OSError):
        raise AccessRefused(f"Cannot find the Label Studio host {host!r} (name resolution failed): is the URL "
                            "right?", kind=LabelStudioErrorKind.UNREACHABLE) from None  # fmt: skip
    addresses = [str(info[4][0]) for info in infos]
    if not addresses or not all(is_public_address(a) for a in addresses):
        raise private_refusal(where or Origin("http", host, port))
    return addresses


# ---- the decision ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredKey:
    """A key the visitor typed, with the origin it was typed for (None: no valid URL then, never reused)."""

    value: str = field(repr=False)
    origin: Origin | None = None


@dataclass(frozen=True)
class Target:
    """Where to send the request, the key to send, and whose key it is."""

    url: str
    api_key: str = field(repr=False)
    key_from: str  # typed | session | environment | none
    public_only: bool = False  # the HTTP client must re-check every address it connects to


def decide(typed_url: str | None, typed_key: str | None = None, stored: StoredKey | None = None, *,
           env_url: str | None = None, env_key: str | None = None, is_locked: bool = False,
           exposure: Exposure = Exposure(), private_ok: bool = False,
           resolve: Resolver = socket.getaddrinfo) -> Target:  # fmt: skip
    """The URL and key one Label Studio action uses, or :class:`AccessRefused` (then nothing is sent).

    ``typed_url`` / ``typed_key``: the page's boxes (empty URL: the configured server). ``stored``: the key
    this session typed before. ``env_url`` / ``env_key``: ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY``.
    A refusal's message names origins only, and any key that got into a URL box is blanked out of it.
    """
    try:
        return _decide(typed_url, typed_key, stored, env_url, env_key, is_locked, exposure, private_ok, resolve)
    except AccessRefused as exc:
        message = str(exc)
        for key in (typed_key, env_key, stored.value if stored else None):
            if key and len(key.strip()) >= 4:
                message = message.replace(key.strip(), "[API key]")
        raise AccessRefused(message, kind=exc.kind) from None


def _decide(typed_url: str | None, typed_key: str | None, stored: StoredKey | None, env_url: str | None,
            env_key: str | None, is_locked: bool, exposure: Exposure, private_ok: bool, resolve: Resolver) -> Target:  # fmt: skip
    configured = (env_url or "").strip() or DEFAULT_URL
    home = origin(configured, "LABEL_STUDIO_URL (the server's setting)")
    url = (typed_url or "").strip() or configured
    where = origin(url)
    ours = where == home
    typed, env_key = (typed_key or "").strip(), (env_key or "").strip()
    if is_locked and not ours:
        raise AccessRefused(f"This app only talks to its configured Label Studio ({LOCKED_ENV} is on): leave the "
                            f"URL box empty. The operator can unlock it with {LOCKED_ENV}=0.",
                            kind=LabelStudioErrorKind.LOCKED)  # fmt: skip
    if is_locked:
        url = configured
    if ours:
        if typed:
            return Target(url, typed, "typed")
        if stored is not None and stored.value and stored.origin == where:
            return Target(url, stored.value, "session")
        # the operator's key goes to the operator's URL exactly, never to a path a visitor chose on that host
        return Target(configured, env_key, "environment" if env_key else "none")
    # another server: the visitor's own key first (so a keyless visitor cannot even probe which hosts resolve)
    if typed:
        key, source = typed, "typed"
    elif stored is not None and stored.value and stored.origin == where:
        key, source = stored.value, "session"
    else:
        again = (f" The key stored in this session was typed for {stored.origin}, and is only sent there."
                 if stored is not None and stored.value else "")  # fmt: skip
        raise AccessRefused(f"Label Studio at {where} needs its own API key: the server's key is only sent to "
                            f"LABEL_STUDIO_URL. Type your API key for {where} into the key box.{again}",
                            kind=LabelStudioErrorKind.NEEDS_KEY)  # fmt: skip
    public_only = exposure.public and not private_ok
    if public_only:
        public_addresses(where.host, where.port, resolve, where)
    return Target(url, key, source, public_only)


def decide_from_env(typed_url: str | None, typed_key: str | None = None, stored: StoredKey | None = None, *,
                    exposure: Exposure | None = None, environ: Mapping[str, str] | None = None,
                    resolve: Resolver = socket.getaddrinfo) -> Target:  # fmt: skip
    """:func:`decide` with the environment read now (the embedded Label Studio sets it at run time)."""
    env = os.environ if environ is None else environ
    return decide(typed_url, typed_key, stored, env_url=env.get("LABEL_STUDIO_URL"),
                  env_key=env.get("LABEL_STUDIO_API_KEY"), is_locked=locked(env),
                  exposure=exposure or Exposure.of(environ=env), private_ok=allow_private(env),
                  resolve=resolve)  # fmt: skip


def key_origin(url: str | None, environ: Mapping[str, str] | None = None) -> Origin | None:
    """The origin a key typed together with ``url`` belongs to (empty URL: the configured server's)."""
    env = os.environ if environ is None else environ
    try:
        return origin((url or "").strip() or (env.get("LABEL_STUDIO_URL") or "").strip() or DEFAULT_URL)
    except AccessRefused:
        return None


# ---- the HTTP client's side -----------------------------------------------------------------------------
def guarded_transport() -> httpx.HTTPTransport:
    """An httpx transport that checks every address it connects to (DNS answers may change after :func:`decide`).

    httpx has no public hook for the address it connects to, so the connection pool's network backend (an
    ``httpcore.SyncBackend``) is swapped for one that resolves the host, refuses non-public answers and then
    connects to the checked address (TLS still verifies the host name).
    """
    import httpcore

    class PublicOnlyBackend(httpcore.SyncBackend):
        def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                        socket_options=None):  # fmt: skip
            address = public_addresses(host, port)[0]
            return super().connect_tcp(address, port, timeout, local_address, socket_options)

    transport = httpx.HTTPTransport()
    # noqa reason: httpx has no public hook for the connect step; the test_the_client_rechecks_* test guards it
    transport._pool._network_backend = PublicOnlyBackend()  # noqa: SLF001
    return transport
