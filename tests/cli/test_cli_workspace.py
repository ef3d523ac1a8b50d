"""``florence-ui export --workspace`` / ``push --workspace``: the mistakes a person makes get a sentence, exit 2.

Runs the real command (``florence_ui.cli.main``) against real workspace files
under a temp ``FLORENCE_UI_DATA``. None of these reach Label Studio: push checks
what it would send before it connects, so a URL that nothing listens on is
enough. The happy paths (COCO, YOLO, a real Label Studio) are in
``tests/workspace/test_workspace_outputs.py``.
"""

from __future__ import annotations

import pytest
from sample_data import write_golden_jsonl

from florence_ui.batch.results_file import load_parser
from florence_ui.cli import main
from florence_ui.workspace import Workspace, workspace_path

NOWHERE = ["--url", "http://127.0.0.1:9", "--api-key", "secret-key-123", "--project", "p"]


def export_args(tmp_path, *extra: str) -> list[str]:
    return ["export", *extra, "--format", "coco", "--out", str(tmp_path / "out")]


def push_args(*extra: str) -> list[str]:
    return ["push", *extra, *NOWHERE]


@pytest.fixture
def box_jsonl(golden, tmp_path):
    """Real Florence-2 box answers on two images (tests/workspace/conftest.py's fixture; not visible here)."""
    return write_golden_jsonl(golden, tmp_path / "boxes", tasks=("<OD>", "<OPEN_VOCABULARY_DETECTION>"))


@pytest.fixture
def data(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    monkeypatch.setenv("FLORENCE_UI_DATA", str(folder))
    return folder


@pytest.mark.parametrize("command", ["export", "push"])
def test_an_unknown_workspace_is_named_with_the_known_ones_and_is_not_created(command, data, tmp_path, capsys):
    Workspace.open("street").close()
    args = (
        export_args(tmp_path, "--workspace", "streets") if command == "export" else push_args("--workspace", "streets")
    )
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no workspace 'streets'") and "street" in err.split("workspaces there:")[1]
    assert "Traceback" not in err
    assert not workspace_path("streets").exists(), "a typo must not leave an empty workspace behind"
    assert not (tmp_path / "out").exists()


def test_an_unknown_workspace_in_an_empty_data_folder_says_how_to_make_one(data, tmp_path, capsys):
    assert main(export_args(tmp_path, "--workspace", "street")) == 2
    err = capsys.readouterr().err
    assert "there are none there yet" in err and "florence-ui workspace import" in err
    assert str(data) in err, "where it looked ($FLORENCE_UI_DATA)"


@pytest.mark.parametrize("command", ["export", "push"])
def test_a_workspace_and_results_files_together_are_refused(command, data, box_jsonl, tmp_path, capsys):
    Workspace.open("street").close()
    source = [str(box_jsonl), "--workspace", "street"]
    assert main(export_args(tmp_path, *source) if command == "export" else push_args(*source)) == 2
    assert "either results.jsonl files or --workspace street, not both" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["export", "push"])
def test_neither_results_nor_a_workspace_is_a_usage_error(command, data, tmp_path, capsys):
    assert main(export_args(tmp_path) if command == "export" else push_args()) == 2
    assert f"{command} needs results.jsonl file(s) or --workspace NAME" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["my photos", "../etc", ""])
def test_an_invalid_name_says_what_is_allowed(name, data, tmp_path, capsys):
    assert main(export_args(tmp_path, "--workspace", name)) == 2
    assert "letters, digits, '-' or '_'" in capsys.readouterr().err
    assert main(push_args("--workspace", name)) == 2
    assert "letters, digits, '-' or '_'" in capsys.readouterr().err
    assert not (data / "workspaces").exists() or not any((data / "workspaces").iterdir())


def test_a_workspace_with_nothing_reviewed_is_a_usage_error(data, box_jsonl, tiny_checkpoint, tmp_path, capsys):
    with Workspace.open("street") as ws:
        ws.import_results(box_jsonl, parser=load_parser(str(tiny_checkpoint)))  # every region still pending
    for args in (export_args(tmp_path, "--workspace", "street"), push_args("--workspace", "street")):
        assert main(args) == 2
        assert "workspace 'street' has no reviewed image to export yet" in capsys.readouterr().err


@pytest.mark.parametrize("flag", [["--min-confidence", "0.5"], ["--model", "base"], ["--revision", "main"]])
def test_results_file_options_do_not_apply_to_a_workspace(flag, data, tmp_path, capsys):
    Workspace.open("street").close()
    assert main(export_args(tmp_path, "--workspace", "street", *flag)) == 2
    assert f"{flag[0]} applies to results files" in capsys.readouterr().err
