"""Issue 12, item 1, on the wire: the operator's Label Studio key only reaches the operator's Label Studio.

The operator's ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY`` point at a real
Label Studio (``labelstudio_server``); a real capture server on 127.0.0.1
(:mod:`capture_server`) stands in for the attacker and records every request.
Driven through the tab's handlers, every Label Studio route of the launched
``app.py`` (gradio_client) and the page in chromium, each test reads what
reached the capture server: never the operator's key, and where the rule
refuses, nothing at all. Only the tab's existing interface is used, so the
same file runs against the code from before the fix. The rule itself, as a
table: ``tests/labelstudio/test_ls_access.py``.
"""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import httpx
import pytest
from browser import chromium_page
from capture_server import CaptureServer
from launched_app import launch_app
from playwright.sync_api import expect
from test_labelstudio_tab import reviewed_session
from test_secrets import session_with_accepted_regions

from florence_ui.labelstudio.client import LabelStudioError, LSSettings, whoami
from florence_ui.labelstudio.server import free_port
from florence_ui.ui import labelstudio_tab as tab

VISITOR_KEY = "visitor-KEY-0a1b2c3d4e5f"
NEEDS_KEY = "needs its own API key: the server's key is only sent to LABEL_STUDIO_URL"
PRIVATE = "is on a loopback, private or link-local address"
LOCKED = "only talks to its configured Label Studio"
NO_MAPPING = {"headers": tab.MAP_HEADERS, "data": []}


# ---- the tab's handlers, on the wire ---------------------------------------------------------------------
@pytest.fixture
def operator_env(labelstudio_server, monkeypatch):
    """The operator's configuration: the real Label Studio and its key, through the environment."""
    if not labelstudio_server.running:
        labelstudio_server.restart()
    for name in ("SPACE_ID", "FLORENCE_UI_LS_LOCKED", "FLORENCE_UI_LS_ALLOW_PRIVATE", "GRADIO_SERVER_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LABEL_STUDIO_URL", labelstudio_server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", labelstudio_server.token)
    return labelstudio_server


def every_handler(session, url: str, key: str) -> list[str]:
    """Test, ↻, check (an existing project) and push through the tab's handlers; their messages."""
    return [tab.on_test(session, url, key)[1], tab.on_refresh(session, url, key)[1],
            tab.on_check(session, url, key, tab.EXISTING, 1)[2],
            tab.on_push(session, url, key, tab.NEW, None, "scope", "add", [], "upload", "")[2],
            tab.on_report(session, url, key, 1)[2]]  # fmt: skip


@pytest.mark.labelstudio
def test_handlers_never_send_the_operator_key_to_a_typed_url(operator_env, engine, golden):
    session = reviewed_session(engine, golden)
    token = operator_env.token
    with CaptureServer() as attacker, CaptureServer() as other:
        messages = every_handler(session, attacker.url, "")
        assert all(NEEDS_KEY in m for m in messages), messages
        assert attacker.requests == []  # refused before any request
        # other spellings of the operator's URL (case, trailing slash) are the operator's server: its key is used
        spelled = operator_env.url.upper().replace("HTTP://", "http://") + "/"
        assert tab.on_test(session, spelled, "")[1].startswith("✅ Connected")
        # the visitor's own key goes to the visitor's URL (and is refused there), the operator's never does
        assert "refused the API key" in tab.on_test(session, attacker.url, VISITOR_KEY)[1]
        assert attacker.seen(VISITOR_KEY) and not attacker.seen(token)
        # that key stays with that URL: another URL with the key box empty is refused, no request made
        for message in every_handler(session, other.url, ""):
            assert NEEDS_KEY in message and VISITOR_KEY not in message
        assert other.requests == []
        assert len(attacker.requests) >= 1 and attacker.seen(token) == []


@pytest.mark.labelstudio
def test_handlers_refuse_private_urls_on_a_space(operator_env, engine, golden, monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/florence")  # read at call time
    monkeypatch.setenv("FLORENCE_UI_LS_LOCKED", "0")
    session = reviewed_session(engine, golden)
    with CaptureServer() as attacker:
        for host in ("127.0.0.1", "localhost", "[::ffff:127.0.0.1]"):
            url = attacker.url.replace("127.0.0.1", host)
            assert all(PRIVATE in m for m in every_handler(session, url, VISITOR_KEY))
        assert attacker.requests == []
        # the operator's own (loopback) server stays usable, and allowing private addresses lets the URL through
        assert tab.on_test(session, "", "")[1].startswith("✅ Connected")
        monkeypatch.setenv("FLORENCE_UI_LS_ALLOW_PRIVATE", "1")
        assert "refused the API key" in tab.on_test(session, attacker.url, VISITOR_KEY)[1]
        assert attacker.seen(VISITOR_KEY) and not attacker.seen(operator_env.token)


@pytest.mark.labelstudio
def test_lock_is_on_for_a_configured_space(operator_env, engine, golden, monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/florence")
    session = reviewed_session(engine, golden)
    with CaptureServer() as attacker:
        assert all(LOCKED in m for m in every_handler(session, attacker.url, VISITOR_KEY))
        assert attacker.requests == []
        assert tab.on_test(session, "", "")[1].startswith("✅ Connected")  # the configured server works
        monkeypatch.setenv("FLORENCE_UI_LS_LOCKED", "0")
        assert all(PRIVATE in m for m in every_handler(session, attacker.url, VISITOR_KEY))  # unlocked: SSRF rule
        assert attacker.requests == []
    # the page shows the lock: the URL box cannot be edited (the lock's default, on a configured Space)
    monkeypatch.delenv("FLORENCE_UI_LS_LOCKED")
    with gr.Blocks() as demo:
        tab.build(gr.State(session))
    (box,) = [c for c in demo.config["components"] if c.get("props", {}).get("elem_id") == "ls-url"]
    assert box["props"]["interactive"] is False and "locked" in box["props"]["label"]


@pytest.mark.labelstudio
def test_the_tab_reads_the_host_gradio_listens_on(operator_env, engine, golden):
    """Launched on 127.0.0.1 a typed 127.0.0.1 URL is fine; once gradio records a public host, it is refused.

    Binding 0.0.0.0 is not allowed on this machine, so the test sets the ``server_name`` that gradio's
    ``launch`` records on the Blocks (``launch(server_name="0.0.0.0")`` stores exactly that).
    """
    from gradio_client import Client

    with gr.Blocks() as demo:
        tab.build(gr.State(reviewed_session(engine, golden)))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        with CaptureServer() as attacker:
            assert "refused the API key" in client.predict(attacker.url, VISITOR_KEY, api_name="/labelstudio_test")[0]
            assert len(attacker.requests) >= 1
            seen = len(attacker.requests)
            demo.server_name = "0.0.0.0"
            assert PRIVATE in client.predict(attacker.url, VISITOR_KEY, api_name="/labelstudio_test")[0]
            assert len(attacker.requests) == seen
    finally:
        demo.close()


# ---- the HTTP client: redirects and the connect-time check ------------------------------------------------
def test_redirects_are_not_followed():
    with CaptureServer() as inside, CaptureServer(redirect_to=None) as outside:
        outside.redirect_to = inside.url  # a server that sends its callers on to another address
        with pytest.raises(LabelStudioError, match=r"redirect \(307\)") as caught:
            whoami(LSSettings(url=outside.url, api_key=VISITOR_KEY, max_retries=0))
        assert VISITOR_KEY not in str(caught.value)
        assert len(outside.requests) == 1 and inside.requests == []


# ---- the launched app: every Label Studio route, and the page ------------------------------------------------
@pytest.fixture(scope="module")
def space_app(tiny_checkpoint, labelstudio_server, tmp_path_factory):
    """``python app.py`` as a Space would run it (``SPACE_ID``), unlocked so the URL box is live."""
    if not labelstudio_server.running:
        labelstudio_server.restart()
    env = {"LABEL_STUDIO_URL": labelstudio_server.url, "LABEL_STUDIO_API_KEY": labelstudio_server.token,
           "SPACE_ID": "someone/florence-ui", "FLORENCE_UI_LS_LOCKED": "0"}  # fmt: skip
    launched = launch_app(tiny_checkpoint, tmp_path_factory.mktemp("space-app"), extra_env=env)
    try:
        yield SimpleNamespace(url=launched.url.rstrip("/"), log=launched.log_path)
    finally:
        launched.stop()


def route_calls(url: str, key: str, project: int | None = None) -> dict[str, tuple]:
    """Every route that reaches Label Studio, with arguments that make it try (check: an existing project)."""
    return {"/labelstudio_test": (url, key), "/labelstudio_refresh": (url, key),
            "/labelstudio_check": (url, key, tab.EXISTING, project),
            "/labelstudio_push": (url, key, tab.NEW, None, "scope", "add", NO_MAPPING, "upload", ""),
            "/labelstudio_report": (url, key, project)}  # fmt: skip


@pytest.mark.labelstudio
@pytest.mark.e2e
def test_every_api_route_and_the_page_keep_the_key_home(space_app, labelstudio_server):
    from gradio_client import Client
    from label_studio_sdk import LabelStudio

    project = (
        LabelStudio(base_url=labelstudio_server.url, api_key=labelstudio_server.token)
        .projects.create(title="key scope", label_config='<View><Image name="image" value="$image"/></View>')
        .id
    )
    config = httpx.get(space_app.url + "/config", timeout=30).json()
    names = {d.get("api_name") for d in config["dependencies"]}
    reaching = {f"/{n}" for n in names if n and n.startswith("labelstudio")}
    assert reaching == set(route_calls("", "")), reaching  # a new Label Studio route must be added here
    with CaptureServer() as attacker:
        client = Client(space_app.url, verbose=False)
        session_with_accepted_regions(client)  # so check and push get as far as Label Studio
        ok = client.predict("", "", api_name="/labelstudio_test")[0]  # the operator's server, the operator's key
        assert ok.startswith("✅ Connected"), ok  # (and the project dropdown now lists the projects)
        for url, key, expect_text in ((attacker.url, "", NEEDS_KEY), (attacker.url, VISITOR_KEY, PRIVATE),
                                      (attacker.url.replace("127.0.0.1", "[::ffff:127.0.0.1]"), VISITOR_KEY, PRIVATE)):  # fmt: skip
            for route, args in route_calls(url, key, project).items():
                out = client.predict(*args, api_name=route)  # the session state is not among the outputs
                text = out[1] if route in ("/labelstudio_check", "/labelstudio_push", "/labelstudio_report") else out[0]
                assert expect_text in text, (route, text)
        with chromium_page(1400, 1200) as page:
            page.set_default_timeout(60_000)
            page.goto(space_app.url + "/")
            page.get_by_role("tab", name="Label Studio & export").click()
            page.locator("#ls-url input, #ls-url textarea").fill(attacker.url)
            page.locator("#ls-key input").fill("")
            page.locator("#ls-test").click()
            expect(page.locator("#ls-connection")).to_contain_text(NEEDS_KEY)
            page.locator("#ls-key input").fill(VISITOR_KEY)
            page.locator("#ls-test").click()
            expect(page.locator("#ls-connection")).to_contain_text(PRIVATE)
            expect(page.locator("#ls-key input")).to_have_value("")
    assert attacker.requests == [], [r.text()[:200] for r in attacker.requests]
    assert labelstudio_server.token not in space_app.log.read_text(errors="replace")
