"""``florence-ui serve``: a pip user starts the UI with the console script, with exactly ``app.py``'s options.

Issue 12: ``app.py`` is not installed by pip and there was no ``serve``
command. The console script is the one pip puts beside the interpreter
(``.venv/bin/florence-ui``), run on this tree (``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from launched_app import launch_app

import app as app_py
from florence_ui import cli
from florence_ui.ui import serve

ROOT = Path(__file__).resolve().parents[2]
CONSOLE_SCRIPT = Path(sys.executable).parent / "florence-ui"


def console(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([str(CONSOLE_SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout)


def options(parser: argparse.ArgumentParser) -> dict[str, tuple]:
    """Every option of a parser with what defines it (flags, default, choices, type, action kind)."""
    return {a.dest: (tuple(a.option_strings), a.default, a.choices, a.type, type(a).__name__)
            for a in parser._actions if a.dest != "help"}  # fmt: skip  # noqa: SLF001 - argparse lists options only there


def serve_subparser() -> argparse.ArgumentParser:
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001 - argparse
    return subparsers.choices["serve"]


def test_serve_and_app_py_take_the_same_options():
    app_parser = serve.build_parser(prog="app.py")
    assert options(serve_subparser()) == options(app_parser)
    assert {"--model", "--port", "--host", "--no-labelstudio", "--dtype"} <= {
        flag for flags, *_ in options(app_parser).values() for flag in flags
    }
    argv = ["--model", "x", "--port", "7999", "--num-beams", "1", "--no-labelstudio", "--dtype", "float32"]
    via_cli = cli.build_parser().parse_args(["serve", *argv])
    assert {k: v for k, v in vars(via_cli).items() if k not in ("command", "func")} == vars(app_py.parse_args(argv))


def test_console_script_serve_help_lists_every_option():
    assert CONSOLE_SCRIPT.exists(), f"{CONSOLE_SCRIPT} missing: pip install -e . creates it"
    out = console("serve", "--help")
    assert out.returncode == 0, out.stderr
    for flags, *_ in options(serve.build_parser()).values():
        for flag in flags:
            assert flag in out.stdout
    assert "127.0.0.1" in out.stdout and "florence-ui serve" in out.stdout
    listed = console("--help")
    assert listed.returncode == 0 and "serve" in listed.stdout


def test_console_script_serve_starts_the_page_and_sigterm_stops_it(tiny_checkpoint, tmp_path):
    """A real start of ``florence-ui serve`` reaching the page over HTTP; SIGTERM closes it promptly (143)."""
    app = launch_app(tiny_checkpoint, tmp_path, program=[str(CONSOLE_SCRIPT), "serve"])
    try:
        with urllib.request.urlopen(app.url, timeout=20) as response:
            assert response.status == 200
            assert "Florence-2 UI" in response.read().decode("utf-8", "replace")
        os.kill(app.process.pid, signal.SIGTERM)
        assert app.process.wait(30) == 128 + signal.SIGTERM, app.log()
        assert "Traceback" not in app.log()
    finally:
        app.stop()


def test_serve_rejects_bad_options_like_app_py(capsys):
    assert cli.main(["serve", "--model", "base", "--num-beams", "99", "--no-labelstudio"]) == 2
    assert "num_beams" in capsys.readouterr().err


def test_serve_in_process_leaves_servers_it_did_not_start_running(labelstudio_server):
    """``serve`` stops what it started, not a Label Studio the calling process already ran (a test session)."""
    from florence_ui import cli

    assert labelstudio_server.running
    assert cli.main(["serve", "--model", "base", "--num-beams", "99", "--no-labelstudio"]) == 2
    assert labelstudio_server.running


# ---- --mcp: the Florence-2 tasks as MCP tools (issue 18; the tools themselves: tests/e2e/test_e2e_mcp.py) --------
def test_mcp_is_asked_by_the_flag_or_a_variable():
    flag, none = serve.parse_args(["--mcp"]), serve.parse_args([])
    assert serve.mcp_wanted(flag, {}) and not serve.mcp_wanted(none, {})
    assert serve.mcp_wanted(none, {"FLORENCE_UI_MCP": "1"}) and serve.mcp_wanted(none, {"FLORENCE_UI_MCP": " Yes "})
    assert not serve.mcp_wanted(none, {"FLORENCE_UI_MCP": "0"})
    # gradio's own switch would list every public endpoint as a tool: it means --mcp here
    assert serve.mcp_wanted(none, {"GRADIO_MCP_SERVER": "True"})
    with pytest.raises(ValueError, match="FLORENCE_UI_MCP='maybe'"):
        serve.mcp_wanted(none, {"FLORENCE_UI_MCP": "maybe"})


def test_a_bad_mcp_variable_or_a_missing_mcp_package_stops_the_start(capsys, monkeypatch):
    monkeypatch.setenv("FLORENCE_UI_MCP", "maybe")
    assert cli.main(["serve", "--model", "base", "--no-labelstudio"]) == 2
    assert "FLORENCE_UI_MCP" in capsys.readouterr().err
    monkeypatch.delenv("FLORENCE_UI_MCP")
    monkeypatch.setitem(sys.modules, "mcp", None)  # import mcp → ImportError, as without gradio[mcp]
    assert serve.main(["--mcp", "--model", "base", "--no-labelstudio"]) == 2
    assert "pip install 'gradio[mcp]'" in capsys.readouterr().err


def test_console_script_serve_with_the_mcp_variable_serves_mcp(tiny_checkpoint, tmp_path):
    """``FLORENCE_UI_MCP=1 florence-ui serve`` (how a Space turns it on): the MCP endpoint answers, the URL is printed."""
    app = launch_app(tiny_checkpoint, tmp_path, {"FLORENCE_UI_MCP": "1"}, program=[str(CONSOLE_SCRIPT), "serve"])
    try:
        mcp = app.url.rstrip("/") + "/gradio_api/mcp/"
        with urllib.request.urlopen(mcp, timeout=20) as response:  # a browser's GET gets gradio's landing page
            assert response.status == 200
        assert f"MCP server: {mcp}" in app.log()
        os.kill(app.process.pid, signal.SIGTERM)
        assert app.process.wait(30) == 128 + signal.SIGTERM, app.log()
        assert "Traceback" not in app.log()
    finally:
        app.stop()
