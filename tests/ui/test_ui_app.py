"""The Blocks page as built (tabs, endpoints, integration points) and the app.py command line."""

from __future__ import annotations

import subprocess
import sys
import types
import urllib.request
from pathlib import Path

import gradio as gr
import pytest

from florence_ui.labelstudio.server import free_port
from florence_ui.model.engine import GenerationSettings
from florence_ui.ui.app import build_app, launch

ROOT = Path(__file__).resolve().parents[2]


def tab_labels(demo: gr.Blocks) -> list[str]:
    return [str(b.label) for b in demo.blocks.values() if isinstance(b, gr.Tab)]


def endpoints(demo: gr.Blocks) -> dict[str, str]:
    return {fn.api_name: fn.api_visibility for fn in demo.fns.values() if fn.api_name}


def test_page_has_the_tabs_and_documented_endpoints(engine, monkeypatch):
    monkeypatch.setitem(sys.modules, "florence_ui.ui.labelstudio_tab", None)  # not built yet → placeholder
    demo = build_app(engine, settings=GenerationSettings(16, 1))
    assert tab_labels(demo) == ["Prompt & review one image", "Review", "Teaching view", "Results JSON",
                                "Label Studio & export", "Workspace: review a dataset"]  # fmt: skip
    names = endpoints(demo)
    documented = ("run_task", "caption_and_ground", "review", "review_update", "review_relabel",
                  "review_accept_above", "teaching", "tasks", "workspace_open")  # fmt: skip
    for name in documented:
        assert names[name] == "public", name
    # the page's own events are callable but kept out of the API docs
    assert {v for k, v in names.items() if k not in documented} <= {"undocumented", "private"}
    header = next(b for b in demo.blocks.values() if isinstance(b, gr.Markdown) and b.elem_id == "header")
    assert engine.model_id in header.value and "cpu" in header.value and "float32" in header.value
    states = [b for b in demo.blocks.values() if isinstance(b, gr.State) and not isinstance(b, gr.BrowserState)]
    assert len(states) == 1


def test_label_studio_tab_gets_the_session_state(engine, monkeypatch):
    seen = []
    fake = types.ModuleType("florence_ui.ui.labelstudio_tab")
    fake.build = lambda state: seen.append(state) or gr.Markdown("LS tab")
    monkeypatch.setitem(sys.modules, "florence_ui.ui.labelstudio_tab", fake)
    demo = build_app(engine)
    assert len(seen) == 1 and isinstance(seen[0], gr.State)
    assert seen[0] in demo.blocks.values()


def test_launch_serves_on_localhost_and_closes(engine):
    port = free_port()
    demo = launch(engine, port=port, prevent_thread_lock=True, quiet=True)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=20) as response:
            assert response.status == 200
            assert "Florence-2 UI" in response.read().decode("utf-8", "replace")
    finally:
        demo.close()


def test_cli_help_lists_the_options():
    out = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    for option in ("--model", "--device", "--dtype", "--host", "--port", "--share", "--max-new-tokens", "--num-beams"):
        assert option in out.stdout
    assert "127.0.0.1" in out.stdout


def test_cli_loading_error_is_a_message_not_a_traceback(capsys, tmp_path):
    import app

    assert app.parse_args([]).host == "127.0.0.1"
    assert app.main(["--model", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert "Could not load Florence-2 model" in err and "Fix:" in err and "Traceback" not in err
    assert app.main(["--model", "base", "--num-beams", "99"]) == 2
    assert "num_beams" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [["--dtype", "float8"], ["--port", "x"]])
def test_cli_rejects_bad_options(bad):
    import app

    with pytest.raises(SystemExit):
        app.parse_args(bad)


def test_every_page_event_reports_its_failure_in_the_status_line(engine):
    """A failing event (a bug, a 500 from gradio) must show a message: each one a browser can trigger, the Label
    Studio tab's and the examples' included, has a gradio ``.failure()`` listener that writes the status line."""
    demo = build_app(engine)
    status = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "status")
    fns = list(demo.fns.values())
    failure_listeners = {fn.trigger_after: fn for fn in fns if fn.trigger_only_on_failure}
    page_events = [fn for fn in fns if fn.targets and not fn.trigger_only_on_failure]
    assert len(page_events) > 15 and any(fn.name == "load_example" for fn in page_events)
    for fn in page_events:
        listener = failure_listeners.get(fn._id)  # noqa: SLF001 - gradio's event ids (no public name)
        assert listener is not None, f"{fn.name} has no failure listener"
        assert [o._id for o in listener.outputs] == [status._id]  # noqa: SLF001 - gradio's block ids
