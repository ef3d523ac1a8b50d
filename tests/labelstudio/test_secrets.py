"""The Label Studio API key never leaves the server side: page, API answers, logs, exported files, errors.

Two keys are followed: the real server's token (real connections and pushes,
typed into the page and given through ``LABEL_STUDIO_API_KEY``) and a fake,
recognisable ``lsk-SECRET-<uuid>`` (refused keys, dead servers, errors). They
are then searched for in:

* the launched app (``app.py``, a subprocess on 127.0.0.1): ``/``, ``/config``,
  ``/gradio_api/info``, every byte of every answer it sent to gradio_client and
  to a real chromium (a recording proxy sits in front of it, so server-sent
  event streams and file downloads are included), the browser's DOM, the key
  box's value and its local/session storage, and the app's stdout/stderr;
* the files the tab and ``florence-ui export`` write, and what ``florence-ui
  push`` prints;
* every kind of :class:`LabelStudioError` (message, ``repr``, the traceback a
  log would print), including servers that echo the key back in their error
  body, and everything Python logging emitted meanwhile (``caplog``, DEBUG);
* the Label Studio server's own log.
"""

from __future__ import annotations

import logging
import re
import traceback
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from browser import chromium_page
from fault_proxy import FaultProxy
from launched_app import launch_app
from sample_data import write_golden_jsonl
from test_labelstudio_tab import flat, reviewed_session

from florence_ui.cli import main
from florence_ui.labelstudio.client import (
    LabelStudioError,
    LSSettings,
    create_project,
    find_task,
    list_projects,
    project_schema,
    push_images,
    whoami,
)
from florence_ui.labelstudio.server import free_port
from florence_ui.ui import labelstudio_tab as tab

pytestmark = pytest.mark.labelstudio
ROOT = Path(__file__).resolve().parents[2]
ROCKET = ROOT / "florence_ui" / "examples" / "rocket.jpg"


def secret() -> str:
    return f"lsk-SECRET-{uuid.uuid4().hex}"


def leaks(keys: list[str], **places: str | bytes) -> dict[str, list[str]]:
    """Which key shows up where (empty: none anywhere)."""
    found: dict[str, list[str]] = {}
    for where, text in places.items():
        blob = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
        hits = [key[:14] + "…" for key in keys if key.encode() in blob]
        if hits:
            found[where] = hits
    return found


def files_text(*roots: Path | str) -> bytes:
    """Every file under ``roots`` (zip members unpacked), as bytes to search."""
    out = []
    for root in map(Path, roots):
        for path in [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()):
            out.append(path.read_bytes())
            if path.suffix == ".zip":
                with zipfile.ZipFile(path) as archive:
                    out += [archive.read(name) for name in archive.namelist()]
    return b"\n".join(out)


# ---- the launched app ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def app(tiny_checkpoint, labelstudio_server, tmp_path_factory) -> Iterator[SimpleNamespace]:
    """``python app.py`` with the tiny checkpoint, Label Studio configured through the environment."""
    if not labelstudio_server.running:
        labelstudio_server.restart()
    env = {"LABEL_STUDIO_URL": labelstudio_server.url, "LABEL_STUDIO_API_KEY": labelstudio_server.token}
    launched = launch_app(tiny_checkpoint, tmp_path_factory.mktemp("app"), extra_env=env)
    try:
        yield SimpleNamespace(url=launched.url.rstrip("/"), log=launched.log_path, proc=launched.process)
    finally:
        launched.stop()


NO_MAPPING = {"headers": tab.MAP_HEADERS, "data": []}  # the mapping table, as the API takes a Dataframe


def session_with_accepted_regions(client) -> None:
    """Through the app's API: a region task on two boxes, both answers accepted."""
    from gradio_client import handle_file

    boxes = [[5, 5, 100, 100], [200, 50, 400, 300]]
    _, result = client.predict(handle_file(str(ROCKET)), "<REGION_TO_CATEGORY>", "", boxes, api_name="/run_task")
    review = client.predict(result["review_ids"], "accepted", api_name="/review_update")
    assert review["counts"]["accepted"] == 2


def test_key_never_reaches_the_page_api_answers_browser_or_app_log(app, labelstudio_server, tmp_path):
    from gradio_client import Client

    fake, real = secret(), labelstudio_server.token
    ls, dead = labelstudio_server.url, f"http://127.0.0.1:{free_port()}"
    downloads: list[str] = []
    with FaultProxy(app.url, record=True) as rec:
        client = Client(rec.url, verbose=False, download_files=str(tmp_path / "client"))
        session_with_accepted_regions(client)
        # a fake key: refused by the real server, and sent to a dead one
        message = client.predict(ls, fake, api_name="/labelstudio_test")[0]
        assert "refused the API key (401" in message
        assert "cannot reach Label Studio" in client.predict(dead, fake, api_name="/labelstudio_test")[0]
        out = client.predict(
            ls, fake, tab.NEW, None, "secrets: refused", "add", NO_MAPPING, "upload", "", api_name="/labelstudio_push"
        )
        assert "refused the API key" in out[1]
        # the real key typed into the page: connect, check, push, push again
        out = client.predict(ls, real, api_name="/labelstudio_test")
        assert out[0].startswith("✅ Connected") and out[1]["value"] == ""  # the key box comes back empty
        assert "A new project gets" in client.predict(ls, "", tab.NEW, None, api_name="/labelstudio_check")[1]
        push = [ls, real, tab.NEW, None, "secrets: typed key", "add", NO_MAPPING, "upload", ""]
        assert client.predict(*push, api_name="/labelstudio_push")[1].startswith("✅ Pushed and verified")
        assert "updated" in client.predict(*push, api_name="/labelstudio_push")[1]
        # the key from the app's environment (empty URL and key boxes), in another browser session
        other = Client(rec.url, verbose=False, download_files=str(tmp_path / "other"))
        session_with_accepted_regions(other)
        out = other.predict(
            "", "", tab.NEW, None, "secrets: env key", "add", NO_MAPPING, "upload", "", api_name="/labelstudio_push"
        )
        assert out[1].startswith("✅ Pushed and verified"), out[1]
        # downloads: Label Studio JSON, COCO, YOLO (fetched through the recorder too)
        for fmt in ("labelstudio", "coco", "yolo"):
            files, note = client.predict(api_name=f"/download_{fmt}")
            assert "region(s) exported" in note
            downloads += [f if isinstance(f, str) else f["path"] for f in files]
        # a real browser: type each key, test the connection, try a push
        with chromium_page(1400, 1200) as page:
            page.set_default_timeout(60_000)
            page.goto(rec.url + "/")
            page.get_by_role("tab", name="Label Studio & export").click()
            page.fill("#ls-url input, #ls-url textarea", ls)
            for key, expect in ((fake, "refused the API key"), (real, "Connected as")):
                page.fill("#ls-key input", key)
                page.click("#ls-test")
                page.locator("#ls-connection").get_by_text(expect, exact=False).wait_for()
            page.click("#ls-push")
            page.locator("#ls-push-result").get_by_text("Load an image", exact=False).wait_for()
            browser = {
                "dom": page.content(),
                "key box": page.locator("#ls-key input").input_value(),
                "storage": page.evaluate("JSON.stringify([{...localStorage}, {...sessionStorage}, document.cookie])"),
            }
        direct = {path: httpx.get(app.url + path, timeout=30).text for path in ("/", "/config", "/gradio_api/info")}
    assert len(downloads) == 4 and len(rec.responses) > 50
    assert browser["key box"] == ""
    found = leaks([fake, real], recorded_answers=rec.recorded_text(), downloads=files_text(*downloads),
                  **{f"GET {p}": t for p, t in direct.items()}, **{f"browser {k}": v for k, v in browser.items()},
                  app_log=app.log.read_bytes(), labelstudio_log=labelstudio_server.tail_log(10**8))  # fmt: skip
    assert found == {}


# ---- exported files and the CLI ----------------------------------------------------------------------
def test_exports_and_cli_output_never_hold_the_key(golden, engine, tiny_checkpoint, labelstudio_server, tmp_path,
                                                    monkeypatch, capsys, caplog):  # fmt: skip
    caplog.set_level(logging.DEBUG)
    fake, real = secret(), labelstudio_server.token
    monkeypatch.setenv("LABEL_STUDIO_URL", labelstudio_server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", fake)
    jsonl = write_golden_jsonl(golden, tmp_path / "in", tasks=("<OD>", "<CAPTION>", "<OCR_WITH_REGION>"))
    for fmt in ("coco", "yolo", "labelstudio"):
        args = ["export", str(jsonl), "--format", fmt, "--out", str(tmp_path / fmt), "--model", str(tiny_checkpoint)]
        assert main(args) == 0
    # the tab's downloads, with both keys stored in the session
    session = reviewed_session(engine, golden)
    tab.remember_connection(session, labelstudio_server.url, fake)
    tab_files = [f for fmt in ("labelstudio", "coco", "yolo") for f in tab.on_download(session, fmt)[0]]
    tab.remember_connection(session, labelstudio_server.url, real)
    tab_files += tab.on_download(session, "coco")[0]
    # push: the fake key from the environment (refused), then the real one on the command line
    base = ["push", str(jsonl), "--model", str(tiny_checkpoint), "--project", "secrets: CLI push"]
    assert main(base) == 2
    refused = capsys.readouterr()
    assert "refused the API key" in refused.err
    assert main([*base, "--api-key", real]) == 0
    pushed = capsys.readouterr()
    assert re.search(r"Pushed (\d+) of \1 images to new project", pushed.out), pushed.out
    found = leaks([fake, real], exports=files_text(tmp_path / "coco", tmp_path / "yolo", tmp_path / "labelstudio"),
                  tab_downloads=files_text(*tab_files), cli_output=refused.out + refused.err + pushed.out + pushed.err,
                  logs=caplog.text)  # fmt: skip
    assert found == {}
    assert (tmp_path / "coco" / "annotations.json").exists() and len(tab_files) == 5


# ---- every kind of LabelStudioError --------------------------------------------------------------------
def echoing(key: str) -> str:
    """An error body that repeats the key it was sent (a careless gateway or a debugging server)."""
    return f'{{"detail": "bad token {key}", "validation_errors": {{"Authorization": ["Token {key}"]}}}}'


def error_of(call) -> LabelStudioError:
    with pytest.raises(LabelStudioError) as caught:
        call()
    return caught.value


def test_no_label_studio_error_holds_the_key(labelstudio_server, ls_settings, engine, golden, caplog):
    caplog.set_level(logging.DEBUG)
    fake, real, ls = secret(), labelstudio_server.token, labelstudio_server.url
    dead = f"http://127.0.0.1:{free_port()}"
    errors: dict[str, LabelStudioError] = {}
    errors["auth"] = error_of(lambda: whoami(LSSettings(url=ls, api_key=fake)))
    errors["unreachable"] = error_of(lambda: whoami(LSSettings(url=dead, api_key=fake, max_retries=0)))
    errors["url"] = error_of(lambda: whoami(LSSettings(url=fake, api_key=fake)))  # the key pasted into the URL box
    errors["project_gone"] = error_of(lambda: project_schema(ls_settings, 10**6))
    errors["not_found"] = error_of(lambda: find_task(ls_settings, 10**6, "0" * 16))
    with FaultProxy(ls) as proxy:
        for key in (fake, real):  # servers or gateways that echo the key back in their error body
            echo = echoing(key)
            settings = LSSettings(url=proxy.url, api_key=key, timeout=1.5, max_retries=0)
            for status, kind in ((401, "auth"), (400, "request"), (500, "server"), (404, "not_found")):
                rule = proxy.add("error", status=status, body=echo.encode(), content_type="application/json")
                errors[f"{kind} {status} echoing the {'real' if key == real else 'fake'} key"] = error_of(
                    lambda s=settings: list_projects(s)
                )
                proxy.rules.remove(rule)
            rule = proxy.add("error", status=200, body=f"<html>{key}</html>".encode())  # not Label Studio at all
            errors[f"not Label Studio {key[:4]}"] = error_of(lambda s=settings: whoami(s))
            proxy.rules.remove(rule)
            rule = proxy.add("slow_answer", delay=3.5)
            errors[f"timeout {key[:4]}"] = error_of(lambda s=settings: whoami(s))
            proxy.rules.remove(rule)
        proxy.wait_idle()
        # a push that fails on its images: the report and its summary
        session = reviewed_session(engine, golden)
        project = create_project(ls_settings, "secrets: echoing server", [session.labeled_image()])
        proxy.add("error", method="POST", path=r"^/api/tasks", status=400, body=echoing(real).encode(),
                  content_type="application/json")  # fmt: skip
        report = push_images(LSSettings(url=proxy.url, api_key=real, max_retries=0), project, [session.labeled_image()])
    assert report.images[0].status == "failed" and "[API key]" in report.images[0].error  # redacted, not dropped
    assert {e.kind for e in errors.values()} == {"auth", "unreachable", "request", "project_gone", "not_found",
                                                 "server", "timeout"}  # fmt: skip
    # the tab's messages for the same faults (all outputs, the server-side session included)
    tab_out = [tab.on_test(reviewed_session(engine, golden), url, fake) for url in (ls, dead)]
    texts = {name: f"{exc}\n{exc!r}\n{exc.args}\n{''.join(traceback.format_exception(exc))}"
             for name, exc in errors.items()}  # fmt: skip
    found = leaks([fake, real], **texts, report=report.summary() + repr(report), tab="".join(map(flat, tab_out)),
                  logs=caplog.text)  # fmt: skip
    assert found == {}
