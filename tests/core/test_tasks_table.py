"""The task table drives behaviour: no task token is named outside it, and each field is read where it matters.

The scan fails when product code names a task (``"<OCR_WITH_REGION>"``, a bare
``"OCR"``, a fragment like ``"CAPTION>"``) instead of reading a field of its row.
The "flip" tests change one field of one row, as adding or editing a task would,
and check that the behaviour that depends on it follows: a branch on a token list
kept elsewhere would not follow, and fails them.
"""

from __future__ import annotations

import ast
import dataclasses
import sys
from pathlib import Path

import pytest
from PIL import Image

import florence_ui
from florence_ui.core.fields import CLASS_NAME
from florence_ui.core.labels import ImageText, Region
from florence_ui.core.tasks import (
    CAPTION_TASK,
    DEFAULT_TASK,
    GROUNDING_TASK,
    TASK_TOKENS,
    TASKS,
    TASKS_BY_TOKEN,
    InputKind,
    LocGroup,
    OutputKind,
    get_task,
)

PACKAGE = Path(florence_ui.__file__).parent
TABLE = PACKAGE / "core" / "tasks.py"
BARE_NAMES = {token.strip("<>") for token in TASK_TOKENS}


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring constants: usage examples in documentation may name tasks (``engine.run(img, "<OD>")``)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                found.add(id(first.value))
    return found


def names_a_task(text: str) -> bool:
    """A whole token, a bare token name, or a fragment of one that starts or ends with its bracket."""
    if any(token in text for token in TASK_TOKENS) or text in BARE_NAMES:
        return True
    fragment = text.startswith("<") or text.endswith(">")
    return fragment and len(text.strip("<>")) >= 2 and any(text in token for token in TASK_TOKENS)


def task_literals(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _docstrings(tree)
    return [
        f"{path}:{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
        if names_a_task(node.value)
    ]


def test_the_scan_sees_what_it_looks_for(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        '"""Docs may say engine.run(image, "<OD>")."""\n'
        'a = x == "<OCR_WITH_REGION>"\nb = "OCR" in y\nc = z.endswith("CAPTION>")\nd = f"{t}<OD>"\n'
        'e = "<loc_1>" + "</s>" + "A car."\n'
    )
    found = [line.split(": ", 1)[1] for line in task_literals(probe)]
    assert found == ["'<OCR_WITH_REGION>'", "'OCR'", "'CAPTION>'", "'<OD>'"], found


def test_no_task_token_literal_outside_the_table():
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) if path != TABLE for hit in task_literals(path)]
    assert not found, "name tasks through core/tasks.py (a field of the row, or a role constant):\n" + "\n".join(found)


# ---- the table itself --------------------------------------------------------------------------------
def test_fields_fit_the_output_kind():
    for task in TASKS:
        assert task.loc_group is {OutputKind.TEXT: LocGroup.NONE, OutputKind.POLYGONS: LocGroup.POINTS,
                                  OutputKind.QUADS: LocGroup.QUAD}.get(task.output, LocGroup.BOX)  # fmt: skip
        if task.tileable:  # tiles are cut from the image: the task must look at the whole of it
            assert task.input is not InputKind.BOXES and task.output is OutputKind.BOXES, task
        if task.mixed_polygons:
            assert task.output is OutputKind.BOXES, task
        if task.free_text_labels:
            assert task.has_regions, task
    assert {t.token for t in TASKS if t.free_text_labels} == {
        "<DENSE_REGION_CAPTION>", "<REGION_TO_DESCRIPTION>", "<REGION_TO_OCR>", "<OCR_WITH_REGION>"}  # fmt: skip
    assert {t.token for t in TASKS if t.reads_text} == {"<OCR>", "<OCR_WITH_REGION>", "<REGION_TO_OCR>"}
    assert {t.token for t in TASKS if t.is_caption} == {"<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>"}
    assert {t.token for t in TASKS if t.tileable} == {
        "<OD>", "<CAPTION_TO_PHRASE_GROUNDING>", "<OPEN_VOCABULARY_DETECTION>"}  # fmt: skip


def test_role_constants_are_rows_that_can_play_their_role():
    assert DEFAULT_TASK in TASKS and DEFAULT_TASK.input is InputKind.NONE  # the page starts with no prompt to type
    assert CAPTION_TASK.is_caption
    assert GROUNDING_TASK.needs_text and GROUNDING_TASK.output is OutputKind.BOXES


# ---- flip one field, the behaviour follows --------------------------------------------------------------
def _flip(monkeypatch, token: str, **changes) -> None:
    """Edit one row of the table for this test: the lookup and every module's ``TASKS`` see the edited row."""
    row = dataclasses.replace(TASKS_BY_TOKEN[token], **changes)
    monkeypatch.setitem(TASKS_BY_TOKEN, token, row)
    current = sys.modules["florence_ui.core.tasks"].TASKS  # an earlier flip in this test may have edited it
    edited = tuple(row if t.token == token else t for t in current)
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("florence_ui") and getattr(module, "TASKS", None) is current:
            monkeypatch.setattr(module, "TASKS", edited)


def test_free_text_labels_drive_review_and_label_studio(monkeypatch):
    from florence_ui.labelstudio.convert import DESCRIPTION_LABEL, TEXT_LABEL, label_of

    box = (1.0, 1.0, 5.0, 5.0)
    for task in TASKS:
        region = Region("a red car", box, task.token)
        assert region.is_text is task.free_text_labels
        want = (TEXT_LABEL if task.reads_text else DESCRIPTION_LABEL) if task.free_text_labels else "a red car"
        assert label_of(region) == want, task.token
    _flip(monkeypatch, "<OD>", free_text_labels=True)
    _flip(monkeypatch, "<REGION_TO_DESCRIPTION>", free_text_labels=False)
    assert Region("a red car", box, "<OD>").is_text and label_of(Region("a red car", box, "<OD>")) == DESCRIPTION_LABEL
    assert not Region("a red car", box, "<REGION_TO_DESCRIPTION>").is_text


def test_reads_text_sends_image_text_to_the_ocr_area(monkeypatch):
    from florence_ui.labelstudio.convert import CAPTION, OCR, text_kind

    for task in TASKS:
        if task.output is OutputKind.TEXT:
            assert text_kind(ImageText(task.token, "words")) == (OCR if task.reads_text else CAPTION)
    _flip(monkeypatch, "<CAPTION>", reads_text=True)
    assert text_kind(ImageText("<CAPTION>", "words")) == OCR
    assert not get_task("<CAPTION>").is_caption


def test_tileable_decides_what_tiles_and_what_the_cli_lists(monkeypatch, capsys):
    from florence_ui.cli import main
    from florence_ui.model.engine import InputError
    from florence_ui.model.tiling import run_tiled

    def listed_as_tiling() -> set[str]:
        capsys.readouterr()
        main(["tasks"])
        return {line.split()[0] for line in capsys.readouterr().out.splitlines() if "[--tile]" in line}

    assert listed_as_tiling() == {t.token for t in TASKS if t.tileable}
    image = Image.new("RGB", (32, 32))
    for task in TASKS:
        if not task.tileable:  # refused before any model call: no engine needed
            with pytest.raises(InputError, match="Tiled mode is for detection tasks"):
                run_tiled(None, image, task.token)
    _flip(monkeypatch, "<OD>", tileable=False)
    _flip(monkeypatch, "<CAPTION>", tileable=True)
    with pytest.raises(InputError, match="Tiled mode is for detection tasks"):
        run_tiled(None, image, "<OD>")
    assert "<OD>" not in listed_as_tiling() and "<CAPTION>" in listed_as_tiling()


def test_loc_group_is_how_the_parser_reads_each_row(engine, golden):
    """Every matched row of every real box / quad answer holds exactly one group of bins."""
    seen = set()
    for vec in golden["vectors"]:
        spec = get_task(vec["task"])
        if spec.output not in (OutputKind.BOXES, OutputKind.QUADS) or spec.mixed_polygons:
            continue
        result = engine.parse(vec["task"], vec["generated_text"], tuple(vec["image_size"]), text=vec["text_input"])
        rows = [r for r in result.regions() if r["loc_bins"]]
        assert rows, vec["task"]
        assert all(len(r["loc_bins"]) == spec.loc_group for r in rows), vec["task"]
        seen.add(spec.loc_group)
    assert seen == {LocGroup.BOX, LocGroup.QUAD}


def test_mixed_polygons_keeps_the_polygons_of_an_answer_that_may_hold_them(monkeypatch, engine):
    answer = "</s>wheel<poly><loc_60><loc_60><loc_90><loc_60><loc_75><loc_90></poly></s>"
    token = next(t.token for t in TASKS if t.mixed_polygons)
    mixed = engine.parse(token, answer, (100, 100), text="wheel")
    assert mixed.has_masks and [str(n) for n in mixed.detections.data[CLASS_NAME]] == ["wheel"]
    _flip(monkeypatch, token, mixed_polygons=False)
    boxes_only = engine.parse(token, answer, (100, 100), text="wheel")
    assert not boxes_only.has_masks
