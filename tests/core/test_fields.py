"""Shared field names and review statuses: spelled once, stored as the same strings as before.

The values are a file format (results.jsonl, the API's JSON, the review table),
so they are pinned here; the scan fails when product code spells a ``data`` key
as a literal instead of using :mod:`florence_ui.core.fields`.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import florence_ui
from florence_ui.core import fields
from florence_ui.core.labels import ImageText, Region
from florence_ui.core.review import ACCEPTED, PENDING, REJECTED, STATUSES, ReviewItem, ReviewSession, ReviewStatus

PACKAGE = Path(florence_ui.__file__).parent
#: our own keys (``polygons`` is also transformers' parse key and a Label Studio shape kind, so it is not scanned)
OURS = {fields.SOURCE_TASK, fields.LOC_BINS, fields.PROMPT_BOX}


def test_field_values_are_the_stored_names():
    assert (fields.CLASS_NAME, fields.QUADS) == ("class_name", "xyxyxyxy")  # supervision's own
    assert (fields.SOURCE_TASK, fields.LOC_BINS, fields.PROMPT_BOX, fields.POLYGONS) == (
        "source_task", "loc_bins", "prompt_box", "polygons")  # fmt: skip


def _is_data(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "data"


def literal_keys(path: Path) -> list[str]:
    """``x.data["key"]``, ``x.data.get("key")``, ``"key" in x.data``, and our own key values spelled anywhere."""
    hits = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        key = None
        if isinstance(node, ast.Subscript) and _is_data(node.value) and isinstance(node.slice, ast.Constant):
            key = node.slice.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            if _is_data(node.func.value) and node.args and isinstance(node.args[0], ast.Constant):
                key = node.args[0].value
        elif (
            isinstance(node, ast.Compare)
            and isinstance(node.left, ast.Constant)
            and any(_is_data(c) for c in node.comparators)
        ):
            key = node.left.value
        elif isinstance(node, ast.Constant) and node.value in OURS:
            key = node.value
        if isinstance(key, str):
            hits.append(f"{path}:{node.lineno}: {key!r}")
    return list(dict.fromkeys(hits))  # ``"key" in x.data`` is seen as a comparison and as one of our values


def test_the_scan_sees_what_it_looks_for(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text('a = det.data["polygons"]\nb = det.data.get("class_name")\nc = "prompt_box" in det.data\n'
                     'd = {"loc_bins": 1}\ne = parsed["polygons"]\n')  # fmt: skip
    assert [h.split(": ", 1)[1] for h in literal_keys(probe)] == ["'polygons'", "'class_name'", "'prompt_box'",
                                                                  "'loc_bins'"]  # fmt: skip


def test_no_data_key_literal_outside_fields():
    own = PACKAGE / "core" / "fields.py"
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) if path != own for hit in literal_keys(path)]
    assert not found, "use florence_ui.core.fields for data keys:\n" + "\n".join(found)


# ---- review statuses --------------------------------------------------------------------------------
def _session_with_two() -> ReviewSession:
    session = ReviewSession()
    session.start("img", (10, 10))
    session.items = [
        ReviewItem(1, PENDING, region=Region("car", (1.0, 1.0, 5.0, 5.0), "<OD>", score=0.9)),
        ReviewItem(2, PENDING, text=ImageText("<CAPTION>", "A car.")),
    ]
    return session


def test_statuses_are_their_strings():
    assert STATUSES == ("pending", "accepted", "rejected") == tuple(ReviewStatus)
    assert (PENDING, ACCEPTED, REJECTED) == tuple(ReviewStatus) and ACCEPTED == "accepted"


def test_a_status_given_as_a_string_is_stored_as_the_enum_and_shown_as_the_string():
    session = _session_with_two()
    assert session.set_status([1], "accepted") == 1  # what the API and the page's buttons send
    assert session.get(1).status is ReviewStatus.ACCEPTED
    assert session.set_all(REJECTED) == 1 and session.get(2).status is ReviewStatus.REJECTED
    rows = session.rows()
    assert [type(r[1]) for r in rows] == [str, str] and [r[1] for r in rows] == ["accepted", "rejected"]
    assert json.loads(json.dumps(session.counts())) == {"pending": 0, "accepted": 1, "rejected": 1}
    assert [i.id for i in session.by_status("accepted")] == [1]


def test_an_unknown_status_is_refused_with_the_same_message():
    with pytest.raises(ValueError, match=r"^status must be one of \('pending', 'accepted', 'rejected'\)$"):
        _session_with_two().set_status([1], "done")
