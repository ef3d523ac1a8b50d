"""``florence-ui pull``'s doors without Label Studio: the operator's key stays with LABEL_STUDIO_URL, and bad
arguments are a sentence and exit 2 (the pull itself, on a real server: tests/labelstudio/test_pull.py)."""

from __future__ import annotations

import pytest
from capture_server import CaptureServer

from florence_ui.cli import EXIT_USAGE, main

OPERATOR_KEY = "operator-KEY-9f8e7d6c5b4a"
VISITOR_KEY = "typed-KEY-0a1b2c3d4e5f"


@pytest.fixture
def operator(monkeypatch):
    with CaptureServer() as home:
        monkeypatch.setenv("LABEL_STUDIO_URL", home.url)
        monkeypatch.setenv("LABEL_STUDIO_API_KEY", OPERATOR_KEY)
        for name in ("SPACE_ID", "FLORENCE_UI_LS_LOCKED", "FLORENCE_UI_LS_ALLOW_PRIVATE"):
            monkeypatch.delenv(name, raising=False)
        yield home


def test_the_environment_key_is_not_sent_to_another_url(operator, tmp_path, capsys):
    with CaptureServer() as other:
        code = main(["pull", "--url", other.url, "--project", "1", "--format", "coco", "--out", str(tmp_path)])
        assert code == EXIT_USAGE
        err = capsys.readouterr().err
        assert "needs its own API key" in err and OPERATOR_KEY not in err
        assert other.requests == [] and operator.requests == []
        # with a key typed for it, that key (and only it) goes there; the 401 is an error sentence
        code = main(["pull", "--url", other.url, "--api-key", VISITOR_KEY, "--project", "1", "--format", "coco",
                     "--out", str(tmp_path)])  # fmt: skip
        assert code == EXIT_USAGE
        err = capsys.readouterr().err
        assert "refused the API key" in err and VISITOR_KEY not in err
        assert other.seen(VISITOR_KEY) and not other.seen(OPERATOR_KEY)


def test_the_operator_url_gets_the_operator_key(operator, tmp_path, capsys):
    assert main(["pull", "--project", "1", "--format", "jsonl", "--out", str(tmp_path)]) == EXIT_USAGE
    assert "refused the API key" in capsys.readouterr().err
    assert operator.seen(OPERATOR_KEY)


def test_a_format_outside_the_list_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["pull", "--project", "1", "--format", "voc", "--out", "x"])
    assert caught.value.code == 2 and "invalid choice" in capsys.readouterr().err
