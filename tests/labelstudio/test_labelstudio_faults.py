"""Label Studio faults against the real server: down, 401, 500, slow, a project deleted mid-session.

Complements ``test_labelstudio_server.py`` (stopped mid-push, lost answers,
503, wrong tokens). Every case checks the three promises: a clear message,
nothing lost (the accepted regions stay in the session / the items), and a
retry that stores each image once with one prediction (counted through an
independent SDK client on the real server).

Faults are real where they can be: the server process is stopped, a personal
access token is really revoked, a project is really deleted. 500s, gateway
401s and slow answers come from :class:`fault_proxy.FaultProxy`, a real HTTP
proxy on 127.0.0.1 in front of the real server, so the product's whole HTTP
stack (SDK retries, httpx timeouts) runs unchanged. The product's own retry
settings are used (``LSSettings`` defaults, ``max_retries=1``), since the
SDK's automatic re-sends are where duplicates would come from.
"""

from __future__ import annotations

import logging
import uuid

import pytest
from fault_proxy import FaultProxy
from test_labelstudio_server import assert_no_duplicates, sdk, small_items, tasks_of
from test_labelstudio_tab import flat, reviewed_session

from florence_ui.core.review import ACCEPTED
from florence_ui.labelstudio.client import LSSettings, create_project, push_images
from florence_ui.ui import labelstudio_tab as tab

pytestmark = pytest.mark.labelstudio
JSON = "application/json"
ACCEPTED_IN_SESSION = 5  # reviewed_session: four <OD> regions and one caption
#: the client timeout in the slow-server tests, and how late the slow answers come (room for a busy machine)
TIMEOUT, SLOW = 2.5, 5.0
LOOKUP = {"method": "GET", "path": r"^/api/tasks/?$", "query": "query="}  # the push's find-by-hash request


@pytest.fixture
def proxy(labelstudio_server):
    if not labelstudio_server.running:  # a failed test elsewhere left it stopped
        labelstudio_server.restart()
    with FaultProxy(labelstudio_server.url) as running:
        yield running


def via(proxy: FaultProxy, server, timeout: float = 10.0) -> LSSettings:
    """The product's settings (its default retries) pointed at the proxy."""
    return LSSettings(url=proxy.url, api_key=server.token, timeout=timeout)


def titled(server, title: str) -> list[int]:
    return [p.id for p in sdk(server).projects.list() if p.title == title]


def one_task_one_prediction(server, title: str) -> int:
    """Exactly one project with this title, holding one task with one prediction; returns the project."""
    (project,) = titled(server, title)
    (task,) = tasks_of(server, project)
    assert len(task.predictions) == 1, f"task {task.id} has {len(task.predictions)} predictions"
    return project


def push_from_tab(session, url: str, title: str, mode: str = tab.NEW, project=None, key: str = "") -> tuple:
    return tab.on_push(session, url, key, mode, project, title, "add", [], "upload", "")


def unique(name: str) -> str:
    return f"{name} {uuid.uuid4().hex[:8]}"


# ---- server down -------------------------------------------------------------------------------------
def test_server_down_before_a_push_from_the_tab(labelstudio_server, engine, golden, caplog):
    caplog.set_level(logging.DEBUG)
    session, title = reviewed_session(engine, golden), unique("down before push")
    accepted = session.review.counts()[ACCEPTED]
    url = labelstudio_server.url
    assert tab.on_test(session, url, labelstudio_server.token)[1].startswith("✅")
    labelstudio_server.stop()
    try:
        tested = tab.on_test(session, url, "")
        assert f"cannot reach Label Studio at {url}. Is it running" in tested[1]
        out = push_from_tab(session, url, title)
        assert out[2].startswith("> ⚠️") and "cannot reach Label Studio" in out[2]
        assert session.labelstudio.get("created_project") is None
        assert session.review.counts()[ACCEPTED] == accepted  # nothing lost
    finally:
        labelstudio_server.restart()
    out = push_from_tab(session, url, title)
    assert out[2].startswith("✅ Pushed and verified") and "created" in out[2]
    again = push_from_tab(session, url, title)
    assert "updated" in again[2]
    one_task_one_prediction(labelstudio_server, title)
    assert labelstudio_server.token not in caplog.text + flat(out) + flat(tested)


def test_server_goes_down_during_a_push_from_the_tab(labelstudio_server, proxy, engine, golden):
    session, title = reviewed_session(engine, golden), unique("down during push")
    tab.remember_connection(session, proxy.url, labelstudio_server.token)
    proxy.add("down", method="POST", path=r"^/api/predictions")  # project and task made, then the server dies
    out = push_from_tab(session, proxy.url, title)
    assert "Push stopped:" in out[2] and "cannot reach Label Studio" in out[2] and "Push again to retry" in out[2]
    project = session.labelstudio["created_project"]  # kept: the retry goes to the same project
    (task,) = tasks_of(labelstudio_server, project)
    assert task.predictions == []
    proxy.clear()
    proxy.start()
    out = push_from_tab(session, proxy.url, title)
    assert out[2].startswith("✅ Pushed and verified") and "updated" in out[2]  # the task found again by hash
    assert one_task_one_prediction(labelstudio_server, title) == project


# ---- 401 -----------------------------------------------------------------------------------------------
def test_token_revoked_between_connect_and_push(labelstudio_server, engine, golden, caplog):
    """A personal access token really revoked in Label Studio: 401, nothing written, a new key works."""
    caplog.set_level(logging.DEBUG)
    session, title, url = reviewed_session(engine, golden), unique("revoked token"), labelstudio_server.url
    pat = sdk(labelstudio_server).tokens.create().token
    assert tab.on_test(session, url, pat)[1].startswith("✅ Connected")
    sdk(labelstudio_server).tokens.blacklist(refresh=pat)
    out = push_from_tab(session, url, title)
    assert out[2].startswith("> ⚠️") and "refused the API key (401" in out[2]
    assert titled(labelstudio_server, title) == [] and session.labelstudio.get("created_project") is None
    assert session.review.counts()[ACCEPTED] == ACCEPTED_IN_SESSION
    assert tab.on_test(session, url, labelstudio_server.token)[1].startswith("✅ Connected")  # paste a good key
    out = push_from_tab(session, url, title)
    assert out[2].startswith("✅ Pushed and verified"), out[2]
    one_task_one_prediction(labelstudio_server, title)
    assert pat not in caplog.text + flat(out)


def test_401_in_the_middle_of_a_push(labelstudio_server, ls_settings, proxy):
    """An auth gateway starts refusing the key halfway: the push stops at once; the retry resumes."""
    items = small_items(3, "401 mid-push")
    project = create_project(ls_settings, "401 mid-push", items)
    proxy.add("error", method="POST", path=r"^/api/tasks", nth={2}, status=401, content_type=JSON,
              body=b'{"detail": "Invalid token."}')  # fmt: skip
    report = push_images(via(proxy, labelstudio_server), project, items)
    assert report.error_kind == "auth" and "refused the API key (401: Invalid token.)" in report.error
    assert [i.status for i in report.images] == ["created", "failed", "not pushed"]
    assert "Push again to retry" in report.summary()
    retry = push_images(via(proxy, labelstudio_server), project, items)
    assert retry.ok and [i.status for i in retry.images] == ["updated", "created", "created"]
    assert_no_duplicates(labelstudio_server, project, items)


# ---- 500 ---------------------------------------------------------------------------------------------
def test_500_after_the_server_stored_the_object_is_not_resent(labelstudio_server, ls_settings, proxy):
    """A 500 that comes back after the task / prediction was stored: the SDK must not send it again."""
    items = small_items(2, "500 after")
    project = create_project(ls_settings, "500 after the work", items)
    tasks_rule = proxy.add("error_after", method="POST", path=r"^/api/tasks", nth={1})
    preds_rule = proxy.add("error_after", method="POST", path=r"^/api/predictions", nth={1})
    report = push_images(via(proxy, labelstudio_server), project, items)
    assert [i.status for i in report.images] == ["failed", "failed"]
    assert all("failed with a server error (500). Try again." in i.error for i in report.images)
    assert tasks_rule.seen == 2 and preds_rule.seen == 1  # one POST per task: no automatic re-send
    stored = tasks_of(labelstudio_server, project)
    assert len(stored) == 2 and sorted(len(t.predictions) for t in stored) == [0, 1]  # stored despite the 500s
    assert [list(i.regions) for i in items] == [list(i.regions) for i in small_items(2, "500 after")]
    retry = push_images(via(proxy, labelstudio_server), project, items)
    assert retry.ok and [i.status for i in retry.images] == ["updated", "updated"]
    assert_no_duplicates(labelstudio_server, project, items)


def test_500_before_any_work_from_the_tab(labelstudio_server, ls_settings, proxy, engine, golden):
    session = reviewed_session(engine, golden)
    project = create_project(ls_settings, "500 before", [session.labeled_image()])
    tab.remember_connection(session, proxy.url, labelstudio_server.token)
    proxy.add("error", method="GET", path=rf"^/api/projects/{project}/?$")  # Django's HTML 500 page
    out = push_from_tab(session, proxy.url, "", tab.EXISTING, project)
    assert out[2] == (f"> ⚠️ Read project {project}: Label Studio at {proxy.url} failed with a server error (500). "
                      "Try again.")  # fmt: skip
    assert tasks_of(labelstudio_server, project) == [] and session.review.counts()[ACCEPTED] == ACCEPTED_IN_SESSION
    proxy.clear()
    proxy.add("error", **LOOKUP)  # the image look-up fails: nothing is written for it, the push goes on
    out = push_from_tab(session, proxy.url, "", tab.EXISTING, project)
    assert "⚠️ Push incomplete" in out[2] and "failed — Look the image up in Label Studio" in out[2]
    proxy.clear()
    out = push_from_tab(session, proxy.url, "", tab.EXISTING, project)
    assert out[2].startswith("✅ Pushed and verified") and "created" in out[2]
    assert_no_duplicates(labelstudio_server, project, [session.labeled_image()])


# ---- slow answers ------------------------------------------------------------------------------------
@pytest.mark.parametrize("action, path", [("slow_answer", r"^/api/predictions"), ("delay", r"^/api/tasks")])
def test_slow_server_times_out_then_retry_has_no_duplicates(labelstudio_server, ls_settings, proxy, action, path):
    """``slow_answer``: stored, answer late. ``delay``: stored late, after the client gave up."""
    items = small_items(3, f"slow {action}")
    project = create_project(ls_settings, f"slow {action}", items)
    proxy.add(action, method="POST", path=path, nth={2}, delay=SLOW)
    report = push_images(via(proxy, labelstudio_server, timeout=TIMEOUT), project, items)
    assert report.error_kind == "timeout" and f"did not answer within {TIMEOUT:g}s" in report.error
    assert [i.status for i in report.images] == ["created", "failed", "not pushed"]
    proxy.wait_idle()  # the late request reaches the server before the retry (as a user's second click would)
    retry = push_images(via(proxy, labelstudio_server, timeout=TIMEOUT), project, items)
    assert retry.ok and [i.status for i in retry.images] == ["updated", "updated", "created"]
    assert_no_duplicates(labelstudio_server, project, items)


def test_slow_but_within_the_timeout_is_just_slow(labelstudio_server, ls_settings, proxy):
    items = small_items(2, "slow ok")
    project = create_project(ls_settings, "slow but fine", items)
    proxy.add("slow_answer", delay=0.2)
    report = push_images(via(proxy, labelstudio_server, timeout=10), project, items)
    assert report.ok and [i.status for i in report.images] == ["created", "created"]
    assert_no_duplicates(labelstudio_server, project, items)


def test_slow_project_creation_from_the_tab_is_not_created_twice(labelstudio_server, proxy, engine, golden,
                                                                 monkeypatch):  # fmt: skip
    monkeypatch.setenv("FLORENCE_UI_LS_TIMEOUT", str(TIMEOUT))  # LSSettings.from_env: the tab's timeout
    session, title = reviewed_session(engine, golden), unique("slow creation")
    tab.remember_connection(session, proxy.url, labelstudio_server.token)
    slow = proxy.add("slow_answer", method="GET", path=r"^/api/current-user/whoami", delay=SLOW)
    out = tab.on_test(session, proxy.url, "")
    assert out[1].startswith("> ⚠️ Test connection: Label Studio at") and f"did not answer within {TIMEOUT:g}s" in out[1]
    proxy.rules.remove(slow)
    proxy.add("slow_answer", method="POST", path=r"^/api/projects/?$", nth={1}, delay=SLOW)
    out = push_from_tab(session, proxy.url, title)
    assert "Create project: Label Studio at" in out[2] and f"did not answer within {TIMEOUT:g}s" in out[2]
    assert (
        session.labelstudio.get("created_project") is None and session.review.counts()[ACCEPTED] == ACCEPTED_IN_SESSION
    )
    proxy.wait_idle()
    assert len(titled(labelstudio_server, title)) == 1  # the server did create it
    out = push_from_tab(session, proxy.url, title)
    assert out[2].startswith("✅ Pushed and verified"), out[2]
    assert one_task_one_prediction(labelstudio_server, title) == session.labelstudio["created_project"]


# ---- a project deleted mid-session ----------------------------------------------------------------------
def test_existing_project_deleted_between_pick_and_push(labelstudio_server, ls_settings, engine, golden):
    session, url = reviewed_session(engine, golden), labelstudio_server.url
    project = create_project(ls_settings, "picked then deleted", [session.labeled_image()])
    tested = tab.on_test(session, url, labelstudio_server.token)
    assert project in [pid for _, pid in tested[3]["choices"]]
    sdk(labelstudio_server).projects.delete(id=project)  # someone else deletes it in Label Studio
    out = push_from_tab(session, url, "", tab.EXISTING, project)
    assert out[2].startswith(f"> ⚠️ Project {project} no longer exists in Label Studio at {url} (deleted?)")
    assert "The project list is refreshed" in out[2]
    assert project not in [pid for _, pid in out[3]["choices"]] and out[3]["value"] is None
    assert session.review.counts()[ACCEPTED] == ACCEPTED_IN_SESSION
    title = unique("after the deleted one")
    out = push_from_tab(session, url, title)
    assert out[2].startswith("✅ Pushed and verified")
    one_task_one_prediction(labelstudio_server, title)


def test_new_project_deleted_between_two_pushes(labelstudio_server, engine, golden):
    session, url, title = reviewed_session(engine, golden), labelstudio_server.url, unique("deleted between pushes")
    tab.remember_connection(session, url, labelstudio_server.token)
    assert push_from_tab(session, url, title)[2].startswith("✅")
    first = session.labelstudio["created_project"]
    sdk(labelstudio_server).projects.delete(id=first)
    out = push_from_tab(session, url, title)
    assert out[2].startswith(f"> ⚠️ Project {first} no longer exists") and "Push again to create a new project" in out[2]
    assert "created_project" not in session.labelstudio and session.review.counts()[ACCEPTED] == ACCEPTED_IN_SESSION
    out = push_from_tab(session, url, title)
    assert out[2].startswith("✅ Pushed and verified") and "created" in out[2]
    second = one_task_one_prediction(labelstudio_server, title)
    assert second != first and session.labelstudio["created_project"] == second


def test_project_deleted_during_a_push(labelstudio_server, ls_settings, proxy):
    items = small_items(3, "deleted mid-push")
    project = create_project(ls_settings, "deleted mid-push", items)
    proxy.add("pass", **LOOKUP, nth={2}, hook=lambda: sdk(labelstudio_server).projects.delete(id=project))
    report = push_images(via(proxy, labelstudio_server), project, items)
    assert report.error_kind == "project_gone" and f"Project {project} no longer exists" in report.error
    assert [i.status for i in report.images] == ["created", "failed", "not pushed"]
    assert "Push them to another project" in report.summary()
    other = create_project(ls_settings, "where the rest went", items)
    retry = push_images(via(proxy, labelstudio_server), other, items)
    assert retry.ok and [i.status for i in retry.images] == ["created"] * 3
    assert_no_duplicates(labelstudio_server, other, items)
