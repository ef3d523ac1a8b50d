"""Issue 12, item 1, the rule itself: whose Label Studio key goes where, as a table of cases.

:func:`florence_ui.labelstudio.access.decide` is the one place that picks the URL and
key of a Label Studio call from what a visitor typed, what the session stored
and the operator's ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY``, the lock and
where the app is reachable from. These cases pin it down without a server;
``tests/labelstudio/test_ls_key_scope.py`` checks the same rules on the wire.
"""

from __future__ import annotations

import socket

import httpx
import pytest
from capture_server import CaptureServer

from florence_ui.labelstudio.access import (
    AccessRefused,
    Exposure,
    Origin,
    StoredKey,
    allow_private,
    decide,
    is_public_address,
    locked,
    origin,
)
from florence_ui.labelstudio.client import LabelStudioError, LSSettings, whoami

OPERATOR_KEY = "op-KEY-7f3c9a1e5b2d4c6e8a0b"
VISITOR_KEY = "visitor-KEY-0a1b2c3d4e5f"
NEEDS_KEY = "needs its own API key: the server's key is only sent to LABEL_STUDIO_URL"
PRIVATE = "is on a loopback, private or link-local address"
LOCKED = "only talks to its configured Label Studio"
ENV = {"env_url": "http://LS.example:8080/", "env_key": OPERATOR_KEY}
PUBLIC, LOCAL = Exposure("0.0.0.0"), Exposure("127.0.0.1")
PUBLIC_IP = "93.184.216.34"  # a literal: resolves without DNS


# ---- the rule, as a table ------------------------------------------------------------------------
def typed(url: str, key: str = "", stored: StoredKey | None = None, **kw):
    return decide(url, key, stored, **(ENV | kw))


SAME_ORIGIN = ["", "http://ls.example:8080", "HTTP://LS.EXAMPLE:8080/", "http://ls.example.:8080",
               "http://ls.example:8080/some/path"]  # fmt: skip
OTHER_ORIGIN = ["http://ls.example:8081", "https://ls.example:8080", "http://ls.example", "http://evil.example:8080",
                "http://ls.example:8080@evil.example", "http://evil.example\\@ls.example:8080/"]  # fmt: skip


@pytest.mark.parametrize("url", SAME_ORIGIN)
def test_operator_key_goes_to_the_operator_url_only(url):
    target = typed(url)
    assert (target.api_key, target.key_from) == (OPERATOR_KEY, "environment")
    assert target.url == ENV["env_url"]  # exactly LABEL_STUDIO_URL, not a path a visitor chose on that host


@pytest.mark.parametrize("url", OTHER_ORIGIN)
def test_another_origin_needs_its_own_key(url):
    with pytest.raises(AccessRefused) as refused:
        typed(url)
    assert refused.value.kind in ("needs_key", "refused")
    assert OPERATOR_KEY not in str(refused.value)
    if refused.value.kind == "needs_key":
        assert NEEDS_KEY in str(refused.value)
        target = typed(url, VISITOR_KEY)  # the visitor's own key is fine
        assert (target.api_key, target.key_from) == (VISITOR_KEY, "typed")


def test_stored_key_stays_with_the_origin_it_was_typed_for():
    x = "http://x.example:8080"
    stored = StoredKey(VISITOR_KEY, origin(x))
    assert typed("HTTP://X.example:8080/", stored=stored).api_key == VISITOR_KEY
    with pytest.raises(AccessRefused) as refused:
        typed("http://y.example:8080", stored=stored)
    assert NEEDS_KEY in str(refused.value) and "typed for http://x.example:8080" in str(refused.value)
    assert VISITOR_KEY not in str(refused.value)
    # a key stored with no valid URL is never sent anywhere but to the operator's server, where the env key wins
    assert typed("", stored=StoredKey(VISITOR_KEY, None)).api_key == OPERATOR_KEY
    # a key the visitor typed for the operator's server is theirs to use there
    mine = StoredKey(VISITOR_KEY, origin(ENV["env_url"]))
    assert typed("", stored=mine).key_from == "session"


@pytest.mark.parametrize("url", ["ftp://ls.example", "file:///etc/passwd", "gopher://x", OPERATOR_KEY,
                                 "http://user:pw@ls.example:8080", "http://:8080", "http://h:70000", "javascript:x"])  # fmt: skip
def test_bad_urls_are_refused_always(url):
    for exposure in (LOCAL, PUBLIC):
        with pytest.raises(AccessRefused) as refused:
            typed(url, VISITOR_KEY, exposure=exposure)
        assert OPERATOR_KEY not in str(refused.value) and VISITOR_KEY not in str(refused.value)


def test_origin_normalises_scheme_host_default_ports_and_slash():
    assert origin("http://LS:8080/") == origin("http://ls:8080") == Origin("http", "ls", 8080)
    assert origin("http://ls:80/x") == origin("HTTP://ls") and origin("https://ls:443") == origin("https://ls/")
    assert origin("http://[::1]:9/") == Origin("http", "::1", 9) and str(Origin("http", "::1", 9)) == "http://[::1]:9"


PRIVATE_URLS = ["http://127.0.0.1:8080", "http://127.9.9.9", "http://localhost:8080", "http://[::1]:8080",
                "http://0.0.0.0:8080", "http://[::]:80", "http://10.0.0.1", "http://172.16.5.4", "http://192.168.1.1",
                "http://169.254.169.254/latest/meta-data", "http://100.64.0.1", "http://224.0.0.1", "http://[fe80::1]",
                "http://[fc00::1]", "http://[ff02::1]", "http://[::ffff:127.0.0.1]", "http://[::ffff:169.254.169.254]",
                "http://[64:ff9b::7f00:1]", "http://[2002:7f00:1::]", "http://240.0.0.1"]  # fmt: skip


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_private_addresses_refused_when_reachable_from_outside(url):
    for exposure in (PUBLIC, Exposure("127.0.0.1", share=True), Exposure("127.0.0.1", space=True),
                     Exposure("192.168.1.20"), Exposure("my-host.example")):  # fmt: skip
        assert exposure.public
        with pytest.raises(AccessRefused) as refused:
            typed(url, VISITOR_KEY, exposure=exposure)
        assert refused.value.kind == "private" and PRIVATE in str(refused.value)
        assert "FLORENCE_UI_LS_ALLOW_PRIVATE=1" in str(refused.value)
    for exposure in (LOCAL, Exposure("localhost"), Exposure("::1")):  # only this machine can reach the app
        assert not exposure.public and typed(url, VISITOR_KEY, exposure=exposure).api_key == VISITOR_KEY
    assert typed(url, VISITOR_KEY, exposure=PUBLIC, private_ok=True).api_key == VISITOR_KEY  # the operator allows


def test_public_addresses_pass_and_the_client_rechecks_them():
    target = typed(f"http://{PUBLIC_IP}:8080", VISITOR_KEY, exposure=PUBLIC)
    assert target.api_key == VISITOR_KEY and target.public_only  # the HTTP client re-checks each connection
    assert not typed(f"http://{PUBLIC_IP}:8080", VISITOR_KEY, exposure=LOCAL).public_only
    assert is_public_address("2606:4700::1") and not is_public_address("::ffff:10.0.0.1")


def test_every_address_of_a_name_must_be_public():
    """A name with one public and one private answer (DNS we cannot serve for real here: a resolver stub)."""

    def mixed(host, port, **kw):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC_IP, port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port))]  # fmt: skip

    with pytest.raises(AccessRefused, match=PRIVATE):
        typed("http://mixed.example", VISITOR_KEY, exposure=PUBLIC, resolve=mixed)
    with pytest.raises(AccessRefused, match="name resolution failed"):
        typed("http://no-such-host.invalid", VISITOR_KEY, exposure=PUBLIC)


def test_operators_own_url_is_never_probed_and_lock_pins_it():
    # LABEL_STUDIO_URL on a private address is the operator's choice: allowed even when public
    assert decide("", env_url="http://10.0.0.5:8080", env_key=OPERATOR_KEY, exposure=PUBLIC).api_key == OPERATOR_KEY
    for url in OTHER_ORIGIN[:4]:
        with pytest.raises(AccessRefused, match=LOCKED) as refused:
            typed(url, VISITOR_KEY, is_locked=True)
        assert refused.value.kind == "locked"
    pinned = typed("http://ls.example:8080/other/path", VISITOR_KEY, is_locked=True)
    assert pinned.url == ENV["env_url"] and pinned.api_key == VISITOR_KEY


@pytest.mark.parametrize(("env", "expected"), [
    ({}, False),
    ({"SPACE_ID": "u/s"}, False),
    ({"SPACE_ID": "u/s", "LABEL_STUDIO_URL": "http://ls"}, False),
    ({"SPACE_ID": "u/s", "LABEL_STUDIO_URL": "http://ls", "LABEL_STUDIO_API_KEY": "k"}, True),
    ({"SPACE_ID": "u/s", "LABEL_STUDIO_URL": "http://ls", "LABEL_STUDIO_API_KEY": "k", "FLORENCE_UI_LS_LOCKED": "0"},
     False),
    ({"FLORENCE_UI_LS_LOCKED": "1"}, True),
    ({"FLORENCE_UI_LS_LOCKED": "yes please"}, True),  # unreadable: the safe side
    ({"LABEL_STUDIO_URL": "http://ls", "LABEL_STUDIO_API_KEY": "k"}, False),
])  # fmt: skip
def test_lock_flag(env, expected):
    assert locked(env) is expected


def test_allow_private_flag_and_exposure_from_env():
    assert not allow_private({}) and allow_private({"FLORENCE_UI_LS_ALLOW_PRIVATE": "1"})
    assert not allow_private({"FLORENCE_UI_LS_ALLOW_PRIVATE": "0"})
    assert not Exposure.of(None, environ={}).public
    assert Exposure.of(None, environ={"GRADIO_SERVER_NAME": "0.0.0.0"}).public
    assert Exposure.of("127.0.0.1", environ={"SPACE_ID": "u/s"}).public


def test_the_client_rechecks_each_address_it_connects_to():
    """A name that answered public to the check and private to the request (DNS rebinding): refused at connect."""
    with CaptureServer() as inside:
        with pytest.raises(LabelStudioError, match=PRIVATE):
            whoami(LSSettings(url=inside.url, api_key=VISITOR_KEY, max_retries=0, public_only=True))
        assert inside.requests == []
        assert isinstance(LSSettings(url=inside.url, api_key="k").http_client(), httpx.Client)
