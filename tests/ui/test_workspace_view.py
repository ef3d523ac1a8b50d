"""The Workspace tab's rules without a browser: what an editor event changed, the actions, the drawn HTML.

Real workspace files in tmp_path and the real published answers (golden results imported, no model).
"""

from __future__ import annotations

import pytest
from sample_data import write_golden_jsonl

from florence_ui.batch.results_file import load_parser
from florence_ui.core.review import ReviewStatus
from florence_ui.errors import ConflictError, WorkspaceError
from florence_ui.ui import workspace_view as view


@pytest.fixture
def workspace(tmp_path, monkeypatch, golden, tiny_checkpoint):
    monkeypatch.setenv("FLORENCE_UI_DATA", str(tmp_path / "data"))
    jsonl = write_golden_jsonl(golden, tmp_path / "golden", tasks=("<OD>", "<OPEN_VOCABULARY_DETECTION>"))
    state = view.WorkspaceState()
    ws = view.open_workspace(state, "street")
    ws.import_results(jsonl, parser=load_parser(str(tiny_checkpoint)))
    state.image_id = view.last_worked_on(ws)
    yield ws, state
    view.REGISTRY.close_all()


def layout_of(*boxes):
    return [(i + 1, 1, list(b), label) for i, (b, label) in enumerate(boxes)]


A, B, C = ([10, 10, 50, 50], "car"), ([60, 10, 90, 40], "wheel"), ([5, 60, 40, 95], "door")


def test_nothing_changed_is_no_change_and_one_pixel_of_rounding_is_no_move():
    assert view.diff_boxes(layout_of(A, B), [A, B]).empty
    assert view.diff_boxes(layout_of(A), [([10.6, 9.5, 50.4, 50.9], "car")]).empty


def test_a_dragged_box_is_a_move_of_that_region_only():
    changes = view.diff_boxes(layout_of(A, B, C), [A, ([70, 20, 100, 50], "wheel"), C])
    assert changes.moved == [(2, 1, [70, 20, 100, 50])]
    assert not (changes.added or changes.deleted or changes.relabelled)


def test_a_deleted_middle_box_is_found_even_though_the_others_shift_up():
    changes = view.diff_boxes(layout_of(A, B, C), [A, C])
    assert changes.deleted == [(2, 1)] and not changes.moved


def test_a_new_box_is_first_and_waits_until_it_has_a_size_and_a_label():
    drawing = view.diff_boxes(layout_of(A), [([30, 30, 31, 31], ""), A])
    assert drawing.empty and drawing.unfinished == 1
    unlabelled = view.diff_boxes(layout_of(A), [([30, 30, 80, 80], ""), A])
    assert unlabelled.empty and unlabelled.unfinished == 1
    done = view.diff_boxes(layout_of(A), [([30, 30, 80, 80], "person"), A])
    assert done.added == [([30, 30, 80, 80], "person")] and not done.moved


def test_a_label_picked_in_the_editor_is_a_relabel():
    changes = view.diff_boxes(layout_of(A, B), [A, (B[0], "tyre")])
    assert changes.relabelled == [(2, 1, "tyre")] and not changes.moved


def test_the_editor_payload_is_read_in_image_pixels_whatever_its_scale():
    value = {"boxes": [{"xmin": 20, "ymin": 40, "xmax": 10, "ymax": 60, "label": " a  car ", "scaleFactor": 2}]}
    assert view.editor_boxes_of(value) == [([5.0, 20.0, 10.0, 30.0], "a car")]


def test_an_editor_move_is_saved_and_a_stale_one_is_refused_naming_the_change(workspace):
    ws, state = workspace
    view.editor_value(ws, state)
    region_id, version, box, label = state.layout[0]
    moved = [box[0] + 5, box[1] + 5, box[2] + 5, box[3] + 5]
    changes = view.diff_boxes(state.layout, [(moved, label)] + [(b, lab) for _r, _v, b, lab in state.layout[1:]])
    assert view.apply_changes(ws, state, changes) == [f"moved #{region_id}"]
    assert list(ws.region(region_id).xyxy) == pytest.approx(moved)
    # another browser still holds the old layout: its edit of the same region is refused
    stale = view.BoxChanges(moved=[(region_id, version, box)])
    with pytest.raises(ConflictError, match="changed by someone else.*box moved"):
        view.apply_changes(ws, state, stale)
    assert list(ws.region(region_id).xyxy) == pytest.approx(moved)


def test_accept_and_reject_move_the_selection_to_the_next_pending_region(workspace):
    ws, state = workspace
    ids = [r.id for r in ws.regions(state.image_id)]
    view.act(ws, state, {"act": "select_next"})
    assert state.selected == ids[0]
    view.act(ws, state, {"act": "reject"})
    assert ws.region(ids[0]).status == ReviewStatus.REJECTED and state.selected == ids[1]
    view.act(ws, state, {"act": "accept", "region": ids[2], "version": ws.region(ids[2]).version})
    assert ws.region(ids[2]).status == ReviewStatus.ACCEPTED and state.selected == ids[3]
    message, redraw = view.act(ws, state, {"act": "undo"})
    assert "Undid" in message and redraw and ws.region(ids[2]).status == ReviewStatus.PENDING
    view.act(ws, state, {"act": "redo"})
    assert ws.region(ids[2]).status == ReviewStatus.ACCEPTED


def test_a_card_showing_an_old_version_cannot_overwrite_a_newer_decision(workspace):
    ws, state = workspace
    region = ws.regions(state.image_id)[0]
    ws.set_status(region.id, ReviewStatus.REJECTED)  # someone else, elsewhere
    with pytest.raises(ConflictError, match="pending → rejected"):
        view.act(ws, state, {"act": "accept", "region": region.id, "version": region.version})
    assert ws.region(region.id).status == ReviewStatus.REJECTED


def test_next_and_previous_walk_the_filtered_queue_and_say_where_it_ends(workspace):
    ws, state = workspace
    first, second = [s.id for s in ws.images()]
    view.go_to(state, first)
    view.act(ws, state, {"act": "next"})
    assert state.image_id == second
    with pytest.raises(WorkspaceError, match="last image of the queue"):
        view.act(ws, state, {"act": "next"})
    view.act(ws, state, {"act": "accept_all"})
    state.queue_filter = "pending"  # only the first image still has pending regions
    view.act(ws, state, {"act": "prev"})
    assert state.image_id == first
    assert [s.id for s in view.queue(ws, state)] == [first]


def test_a_click_on_the_image_picks_the_smallest_region_under_it(workspace):
    ws, state = workspace
    regions = ws.regions(state.image_id)
    smallest = min(regions, key=lambda r: (r.xyxy[2] - r.xyxy[0]) * (r.xyxy[3] - r.xyxy[1]))
    x = (smallest.xyxy[0] + smallest.xyxy[2]) / 2
    y = (smallest.xyxy[1] + smallest.xyxy[3]) / 2
    view.act(ws, state, {"act": "pick", "x": x, "y": y})
    assert state.selected == smallest.id
    view.act(ws, state, {"act": "pick", "x": -50, "y": -50})
    assert state.selected is None


def test_labels_and_names_are_escaped_in_the_cards_and_the_queue(workspace):
    ws, state = workspace
    region = ws.regions(state.image_id)[0]
    evil = '<img src=x onerror="alert(1)">'
    ws.relabel(region.id, evil)
    html = view.cards_html(ws, state)
    assert evil not in html and "&lt;img src=x" in html
    assert "<img src=x" not in view.queue_html(ws, state)


def test_the_editor_shows_rejected_boxes_only_when_asked_and_colours_them_by_state(workspace):
    ws, state = workspace
    first = ws.regions(state.image_id)[0]
    ws.set_status(first.id, ReviewStatus.REJECTED)
    value = view.editor_value(ws, state)
    assert first.id not in [r for r, *_ in state.layout]
    assert all(b["color"] == view.STATUS_COLORS["pending"] for b in value["boxes"])
    state.show_rejected = True
    value = view.editor_value(ws, state)
    assert state.layout[0][0] == first.id and value["boxes"][0]["color"] == view.STATUS_COLORS["rejected"]


def test_after_a_restart_the_workspace_opens_on_the_image_last_worked_on(workspace):
    ws, state = workspace
    second = ws.images()[1].id
    ws.set_status(ws.regions(second)[0].id, ReviewStatus.ACCEPTED)
    view.REGISTRY.close_all()
    fresh = view.WorkspaceState()
    view.open_workspace(fresh, "street")
    assert fresh.image_id == second


def test_a_server_folder_is_only_offered_on_a_local_app_unless_the_operator_names_one(monkeypatch, tmp_path):
    monkeypatch.delenv(view.FOLDER_ROOT_ENV, raising=False)
    assert view.folder_root(public=True) is None
    assert view.folder_root(public=False) is not None
    monkeypatch.setenv(view.FOLDER_ROOT_ENV, str(tmp_path))
    assert view.folder_root(public=True) == tmp_path.resolve()


def test_the_prompt_pages_review_is_kept_in_the_workspace_with_its_decisions(tmp_path, monkeypatch, tiny_checkpoint,
                                                                             golden):  # fmt: skip
    from pathlib import Path

    from recorded_engine import RecordedEngine

    from florence_ui.model.engine import GenerationSettings
    from florence_ui.ui.controller import Controller
    from florence_ui.ui.session import UISession

    monkeypatch.setenv("FLORENCE_UI_DATA", str(tmp_path / "data"))
    controller = Controller(RecordedEngine.from_checkpoint(tiny_checkpoint, golden), GenerationSettings(32, 1))
    rocket = Path(__file__).resolve().parents[2] / "florence_ui" / "examples" / "rocket.jpg"
    session = UISession()
    controller.set_input(session, {"image": str(rocket), "boxes": []})
    with pytest.raises(WorkspaceError, match="open or create one in the Workspace tab"):
        view.keep_in_workspace(session)
    controller.run(session, "<OD>")
    items = [i for i in session.review.items if i.region is not None]
    assert len(items) >= 3
    session.review.set_status([items[0].id], "accepted")
    session.review.set_status([items[1].id], "rejected")
    session.review.relabel(items[2].id, "spaceship")
    session.workspace = view.WorkspaceState()
    try:
        ws = view.open_workspace(session.workspace, "kept")
        message = view.keep_in_workspace(session)
        assert "2 decision(s) carried over" in message
        [image] = ws.images()
        regions = ws.regions(image.id)
        assert [r.status for r in regions[:3]] == [ReviewStatus.ACCEPTED, ReviewStatus.REJECTED, ReviewStatus.PENDING]
        assert regions[2].label == "spaceship"
        assert [list(r.xyxy) for r in regions] == [pytest.approx(list(i.region.xyxy)) for i in items]
        assert session.workspace.image_id == image.id
    finally:
        view.REGISTRY.close_all()


def test_the_editor_gets_a_copy_the_page_may_serve_wherever_the_photo_lives(workspace, tmp_path, monkeypatch):
    import tempfile
    from pathlib import Path

    ws, state = workspace
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "system-tmp"))  # photos outside the temp folder
    (tmp_path / "system-tmp").mkdir()
    served = Path(view.image_file(ws, state.image_id))
    assert served.is_relative_to(tmp_path / "system-tmp")
    assert served.read_bytes() == ws.image_bytes(state.image_id)  # a copy, not a re-encoding
