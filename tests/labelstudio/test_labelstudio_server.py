"""Against a real Label Studio server: push the golden outputs, read them back, break things, retry."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace

import httpx
import pytest
from label_studio_sdk import LabelStudio

from florence_ui.core.labels import LabeledImage, Region
from florence_ui.labelstudio.client import (
    LabelStudioError,
    LSSettings,
    check_project,
    create_project,
    list_projects,
    push_images,
    whoami,
)
from florence_ui.labelstudio.convert import HASH_KEY, MissingInProject, label_of

pytestmark = pytest.mark.labelstudio
TOL = 0.05  # percent


def sdk(server) -> LabelStudio:
    """An independent SDK client to read back what the product code wrote."""
    return LabelStudio(base_url=server.url, api_key=server.token)


def tasks_of(server, project: int) -> list:
    return list(sdk(server).tasks.list(project=project))


def expected_percent(region: Region, w: int, h: int) -> list[list[float]]:
    """What Label Studio must hold for a region, computed here from its pixels (one list per LS region)."""
    flats = region.polygons or ([region.quad] if region.kind == "quad" and region.quad else [])
    if flats:
        return [[v / (w if k % 2 == 0 else h) * 100 for k, v in enumerate(flat)] for flat in flats]
    x1, y1, x2, y2 = region.xyxy
    return [[x1 / w * 100, y1 / h * 100, (x2 - x1) / w * 100, (y2 - y1) / h * 100]]


def read_back_figures(task, item: LabeledImage) -> dict:
    """Compare one task's only prediction with the accepted regions; return the counts."""
    assert len(task.predictions) == 1, f"task {task.id} has {len(task.predictions)} predictions"
    pred = task.predictions[0]
    pred = pred if isinstance(pred, dict) else pred.model_dump()
    assert pred["model_version"] == item.model_version
    results = pred["result"]
    geometry = [r for r in results if r["type"] in ("rectanglelabels", "polygonlabels")]
    by_id = {r["id"]: r for r in geometry}
    texts = {r["id"]: r["value"]["text"][0] for r in results if r["from_name"] == "region_text"}
    compared = 0
    for i, region in enumerate(item.regions, start=1):
        for j, want in enumerate(expected_percent(region, item.width, item.height)):
            got = by_id[f"r{i}" if j == 0 else f"r{i}p{j}"]
            value = got["value"]
            assert (got["original_width"], got["original_height"]) == (item.width, item.height)
            assert got["score"] == pytest.approx(region.score)
            if "points" in value:
                flat = [c for point in value["points"] for c in point]
                assert flat == pytest.approx(want, abs=TOL)
                assert value["polygonlabels"] == [label_of(region)]
            else:
                assert [value["x"], value["y"], value["width"], value["height"]] == pytest.approx(want, abs=TOL)
                assert value["rectanglelabels"] == [label_of(region)]
            compared += len(want)
        if region.is_text:
            assert texts[f"r{i}"] == region.label
    image_texts = [t for r in results if r["from_name"] in ("caption", "ocr") for t in r["value"]["text"]]
    assert sorted(image_texts) == sorted(t.text for t in item.texts)
    return {"regions_accepted": len(item.regions), "ls_regions_read_back": len(geometry),
            "region_texts_read_back": len(texts), "image_texts_read_back": len(image_texts),
            "coordinates_compared": compared, "prediction_score": pred.get("score")}  # fmt: skip


# ---- connection ----------------------------------------------------------------------------------
def test_connection_with_legacy_and_personal_access_tokens(labelstudio_server, ls_settings, ls_personal_token):
    assert whoami(ls_settings).startswith(f"{labelstudio_server.username} (user #")
    pat = LSSettings(url=labelstudio_server.url, api_key=ls_personal_token)
    client = pat.client()
    assert not client._client_wrapper._tokens_client._use_legacy_token  # noqa: SLF001 - a JWT, exchanged by the SDK (no public flag)
    assert labelstudio_server.username in whoami(client)
    assert isinstance(list_projects(pat), list)


@pytest.mark.parametrize("bad_key", ["not-the-token-0123456789abcdef", "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoi"
                                     "cmVmcmVzaCIsImV4cCI6OTk5OTk5OTk5OX0.c2lnbmF0dXJl", ""])  # fmt: skip
def test_wrong_token_gives_a_clear_message_without_the_key(labelstudio_server, bad_key, caplog):
    caplog.set_level(logging.DEBUG)
    settings = LSSettings(url=labelstudio_server.url, api_key=bad_key, max_retries=0)
    with pytest.raises(LabelStudioError) as err:
        whoami(settings)
    assert err.value.kind == "auth"
    assert "API key" in str(err.value)
    if bad_key:
        assert bad_key not in str(err.value) and bad_key not in caplog.text and bad_key not in repr(settings)
    with pytest.raises(LabelStudioError):
        push_images(settings, 1, [LabeledImage(4, 4, regions=[Region("a", (0, 0, 2, 2), "<OD>")])])


# ---- push and read back ----------------------------------------------------------------------------
def test_golden_outputs_round_trip(labelstudio_server, golden_push, artifacts_dir):
    project, items, report = golden_push
    assert report.ok, report.summary()
    by_hash = {item.image_hash: item for item in items}
    tasks = tasks_of(labelstudio_server, project)
    assert len(tasks) == len(items) == 4
    figures = {}
    for task in tasks:
        item = by_hash[task.data[HASH_KEY]]
        assert task.data["image"].startswith("/data/upload/")  # uploaded: no shared storage needed
        figures[task.id] = read_back_figures(task, item)
    sent = {i.task_id: i for i in report.images}
    for task_id, fig in figures.items():
        entry = sent[task_id]
        assert entry.verified and entry.regions_sent == entry.regions_accepted == fig["regions_accepted"]
        assert entry.ls_regions == entry.regions_read_back == fig["ls_regions_read_back"]
        assert entry.url == f"{labelstudio_server.url}/projects/{project}/data?task={task_id}"
    total = {k: sum(f[k] for f in figures.values()) for k in ("regions_accepted", "ls_regions_read_back",
                                                               "region_texts_read_back", "image_texts_read_back",
                                                               "coordinates_compared")}  # fmt: skip
    (artifacts_dir / "labelstudio_roundtrip.json").write_text(json.dumps({"per_task": figures, "total": total},
                                                                         indent=1))  # fmt: skip
    assert total["regions_accepted"] == total["ls_regions_read_back"] == 45


def test_repush_updates_instead_of_duplicating(labelstudio_server, ls_settings, golden_push):
    project, items, first = golden_push
    again = push_images(ls_settings, project, items)
    assert again.ok and {i.status for i in again.images} == {"updated"}
    assert [i.task_id for i in again.images] == [i.task_id for i in first.images]
    tasks = tasks_of(labelstudio_server, project)
    assert len(tasks) == len(items) and all(len(t.predictions) == 1 for t in tasks)
    # an edited review (one region relabelled, one dropped) replaces the prediction's content
    edited = replace(items[0], regions=[replace(items[0].regions[0], label="vehicle")] + items[0].regions[2:])
    report = push_images(ls_settings, project, [edited], missing="add")
    assert report.ok and report.images[0].status == "updated"
    task = sdk(labelstudio_server).tasks.get(id=str(report.images[0].task_id))
    read_back_figures(task, edited)
    push_images(ls_settings, project, [items[0]])  # leave the project as the golden push made it


def test_existing_url_instead_of_upload(labelstudio_server, ls_settings):
    items = small_items(1, "by reference")
    project = create_project(ls_settings, "by reference", items)
    report = push_images(ls_settings, project, items, image_url="/data/local-files/?d=images/{name}")
    assert report.ok, report.summary()
    task = tasks_of(labelstudio_server, project)[0]
    assert task.data["image"] == f"/data/local-files/?d=images/image-{items[0].image_hash[:12]}.png"
    assert task.file_upload is None  # nothing uploaded


# ---- a project with a different label set ---------------------------------------------------------------
DETECTION = ('<View><Image name="img" value="$picture"/><RectangleLabels name="bbox" toName="img">'
             '<Label value="car"/><Label value="tyre"/></RectangleLabels></View>')  # fmt: skip


def other_project(server, title: str) -> int:
    return int(sdk(server).projects.create(title=title, label_config=DETECTION).id)


def test_different_label_set_is_never_silently_dropped(labelstudio_server, ls_settings, golden_labeled):
    item = golden_labeled["car"]
    project = other_project(labelstudio_server, "their labels")
    check = check_project(ls_settings, project, [item])
    assert set(check.missing_label_names()) == {"door handle", "wheel", "wheels", "a car"}
    with pytest.raises(MissingInProject):
        push_images(ls_settings, project, [item])  # "ask": nothing written before the user chooses
    with pytest.raises(MissingInProject):  # a mapping cannot create the missing PolygonLabels
        push_images(ls_settings, project, [item], missing="map", label_map={"door handle": "car", "wheel": "tyre",
                                                                            "wheels": "tyre", "a car": "car"})  # fmt: skip
    assert tasks_of(labelstudio_server, project) == []
    # leave them out: the report lists each region left out
    report = push_images(ls_settings, project, [item], missing="leave_out")
    entry = report.images[0]
    assert report.ok and entry.regions_sent == 1 and len(entry.left_out) == len(item.regions) - 1
    assert entry.regions_read_back == 1 and "left out" in report.summary()
    task = tasks_of(labelstudio_server, project)[0]
    assert "picture" in task.data  # the project's own data key
    # add them: same task, now with every region
    report = push_images(ls_settings, project, [item], missing="add")
    assert report.ok and report.images[0].status == "updated" and report.images[0].task_id == task.id
    tasks = tasks_of(labelstudio_server, project)
    assert len(tasks) == 1
    read_back_figures(tasks[0], item)
    config = sdk(labelstudio_server).projects.get(id=project).label_config
    assert 'value="door handle"' in config and "PolygonLabels" in config


def test_label_mapping_onto_the_projects_labels(labelstudio_server, ls_settings, golden_labeled):
    item = golden_labeled["car"]
    boxes_only = replace(item, regions=[r for r in item.regions if not r.polygons])
    project = other_project(labelstudio_server, "mapped")
    mapping = {"door handle": "car", "wheel": "tyre", "wheels": "tyre"}
    report = push_images(ls_settings, project, [boxes_only], missing="map", label_map=mapping)
    assert report.ok and report.images[0].regions_sent == len(boxes_only.regions)
    pred = tasks_of(labelstudio_server, project)[0].predictions[0]
    labels = sorted(
        r["value"]["rectanglelabels"][0] for r in (pred if isinstance(pred, dict) else pred.model_dump())["result"]
    )
    assert labels == sorted(mapping.get(r.label, r.label) for r in boxes_only.regions)


# ---- faults ------------------------------------------------------------------------------------------------
class FaultyTransport(httpx.BaseTransport):
    """Forwards to the real server, but fails the requests ``mode_for`` picks, like a flaky network or proxy."""

    def __init__(self, mode_for: Callable[[httpx.Request], str | None]) -> None:
        self.inner = httpx.HTTPTransport()
        self.mode_for = mode_for

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        mode = self.mode_for(request)
        if mode == "lost":  # the server does the work, its answer never arrives
            self.inner.handle_request(request).read()
            raise httpx.ReadTimeout("timed out", request=request)
        if mode == "503":
            return httpx.Response(503, json={"detail": "Service Unavailable"}, request=request)
        return self.inner.handle_request(request)


def faulty_client(server, mode_for) -> LabelStudio:
    http = httpx.Client(transport=FaultyTransport(mode_for), timeout=5)
    return LabelStudio(base_url=server.url, api_key=server.token, httpx_client=http, max_retries=0)


def small_items(n: int, tag: str) -> list[LabeledImage]:
    from PIL import Image

    return [LabeledImage(64, 48, regions=[Region("dot", (4 + k, 4, 20, 30), "<OD>", score=0.6)],
                         image=Image.new("RGB", (64, 48), (k * 40, 10, len(tag) * 9)), model="m", revision="r")
            for k in range(n)]  # fmt: skip


def assert_no_duplicates(server, project: int, items: list[LabeledImage]) -> None:
    tasks = tasks_of(server, project)
    assert sorted(t.data[HASH_KEY] for t in tasks) == sorted(i.image_hash for i in items)
    assert all(len(t.predictions) == 1 for t in tasks)


@pytest.mark.parametrize("what", ["api/tasks", "api/predictions"])
def test_timeout_mid_push_then_retry_without_duplicates(labelstudio_server, ls_settings, what, caplog):
    caplog.set_level(logging.DEBUG)
    items = small_items(3, what)
    project = create_project(ls_settings, f"timeout {what}", items)
    calls = {"n": 0}

    def lose_second(request: httpx.Request) -> str | None:
        if request.method == "POST" and request.url.path.rstrip("/").endswith(what):
            calls["n"] += 1
            return "lost" if calls["n"] == 2 else None
        return None

    before = [list(i.regions) for i in items]
    report = push_images(faulty_client(labelstudio_server, lose_second), project, items)
    assert not report.ok and "did not answer" in report.error
    assert [i.status for i in report.images] == ["created", "failed", "not pushed"]
    assert "Push again to retry" in report.summary()
    assert [list(i.regions) for i in items] == before  # accepted regions stay
    retry = push_images(ls_settings, project, items)
    assert retry.ok, retry.summary()
    assert [i.status for i in retry.images] == ["updated", "updated", "created"]
    assert_no_duplicates(labelstudio_server, project, items)
    assert labelstudio_server.token not in caplog.text + report.summary() + retry.summary()


def test_server_errors_are_reported_and_retried(labelstudio_server, ls_settings):
    items = small_items(2, "5xx")
    project = create_project(ls_settings, "5xx", items)

    def fail_predictions(request: httpx.Request) -> str | None:
        return "503" if request.url.path.startswith("/api/predictions") else None

    report = push_images(faulty_client(labelstudio_server, fail_predictions), project, items)
    assert not report.ok and {i.status for i in report.images} == {"failed"}
    assert all("server error (503)" in i.error for i in report.images)
    retry = push_images(ls_settings, project, items)
    assert retry.ok and [i.status for i in retry.images] == ["updated", "updated"]  # tasks were kept, found by hash
    assert_no_duplicates(labelstudio_server, project, items)


def test_server_stopped_mid_session(labelstudio_server, ls_settings, caplog):
    caplog.set_level(logging.DEBUG)
    items = small_items(3, "stopped")
    project = create_project(ls_settings, "stopped", items)
    assert push_images(ls_settings, project, items[:1]).ok
    lookups = {"n": 0}

    def stop_at_second_image(request: httpx.Request) -> None:
        if request.method == "GET" and request.url.path.startswith("/api/tasks") and "query" in request.url.params:
            lookups["n"] += 1
            if lookups["n"] == 2:
                labelstudio_server.stop()  # the server goes away in the middle of the push

    try:
        report = push_images(faulty_client(labelstudio_server, stop_at_second_image), project, items)
        assert not report.ok and "cannot reach Label Studio" in report.error
        assert [i.status for i in report.images] == ["updated", "failed", "not pushed"]
        with pytest.raises(LabelStudioError) as err:  # the rest of the session gets the same clear answer
            whoami(ls_settings)
        assert err.value.kind == "unreachable" and labelstudio_server.url in str(err.value)
        with pytest.raises(LabelStudioError, match="cannot reach Label Studio"):
            push_images(ls_settings, project, items)
    finally:
        labelstudio_server.restart()
    retry = push_images(ls_settings, project, items)
    assert retry.ok and [i.status for i in retry.images] == ["updated", "created", "created"]
    assert_no_duplicates(labelstudio_server, project, items)
    assert labelstudio_server.token not in caplog.text + report.summary() + retry.summary()
