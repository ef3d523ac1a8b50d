"""The app's embedded default: no Label Studio configured → a local one starts and the tab connects to it."""

from __future__ import annotations

import json
import os
import stat

import pytest

from florence_ui.labelstudio import server as ls_server
from florence_ui.labelstudio.client import LSSettings, whoami
from florence_ui.ui import labelstudio_tab as tab
from florence_ui.ui.session import UISession

pytestmark = pytest.mark.labelstudio


def test_embedded_label_studio_starts_when_none_is_configured(monkeypatch, tmp_path):
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    monkeypatch.setenv("FLORENCE_UI_LS_DATA", str(tmp_path / "embedded"))
    server = ls_server.start_embedded_if_unconfigured(background=False, port=ls_server.free_port())
    try:
        assert server is not None and server.url.startswith("http://127.0.0.1:")
        creds_file = tmp_path / "embedded" / ls_server.CREDENTIALS_FILE
        assert stat.S_IMODE(creds_file.stat().st_mode) == 0o600
        creds = json.loads(creds_file.read_text())
        assert creds["token"] == server.token and ls_server.load_or_create_credentials(creds_file.parent) == creds
        # the app's defaults now point at it (SDK conventions), so the tab connects with empty boxes
        assert os.environ["LABEL_STUDIO_URL"] == server.url
        assert server.username in whoami(LSSettings.from_env())
        out = tab.on_test(UISession(), "", "")
        assert out[1].startswith("✅ Connected as") and f"log in as {server.username}" in out[1]
        assert server.token not in repr(out) and server.password not in repr(out)
        # configured now: a second call starts nothing
        assert ls_server.start_embedded_if_unconfigured(background=False) is None
    finally:
        if server is not None:
            server.stop()
        ls_server.forget_embedded()
    assert not server.running


def test_embedded_status_lines(monkeypatch):
    monkeypatch.setattr(ls_server, "_embedded", {"state": "starting"})
    assert "still starting" in ls_server.embedded_status()
    monkeypatch.setattr(ls_server, "_embedded", {"state": "failed", "error": "no venv"})
    assert ls_server.embedded_status().endswith("no venv")
    monkeypatch.setattr(ls_server, "_embedded", {})
    assert ls_server.embedded_status() is None
