"""The embedded Label Studio never outlives the app that started it, and apps on one data dir share one server.

Issue 12: stopped with SIGTERM, or while Label Studio was still starting, the
app left its Label Studio running, and each later start added another one on
the same SQLite file. These tests launch the real app (``app.py`` in its own
process, the tiny checkpoint, a real Label Studio from ``FLORENCE_UI_LS_VENV``
on a temp ``FLORENCE_UI_LS_DATA``), signal it as a service manager or a
terminal would, and read ``/proc`` for any Label Studio process left working on
the test's folders.
"""

from __future__ import annotations

import _thread
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from launched_app import LaunchedApp, launch_app

from florence_ui.labelstudio import server as ls_server

READY = "embedded Label Studio ready at"


def ls_processes(folder: Path) -> list[int]:
    """Live (not zombie) Label Studio processes, server or ``init``, whose command line names ``folder``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(a.endswith("label-studio") for a in args) and any(str(folder) in a for a in args):
            try:
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state not in ("Z", "X"):  # an unreaped zombie has stopped
                found.append(int(entry.name))
    return found


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def wait_for(condition: Callable[[], object], timeout: float, what: str, *apps: LaunchedApp) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    logs = "\n".join(f"--- {app.log_path}:\n{app.log()[-3000:]}" for app in apps)
    pytest.fail(f"{what} not within {timeout:.0f}s\n{logs}")


def kill_leftovers(folder: Path, *apps: LaunchedApp) -> None:
    """After a failure: leave no app and no Label Studio running."""
    for app in apps:
        app.stop()
    for pid in ls_processes(folder):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.mark.labelstudio
def test_an_interrupt_while_label_studio_boots_stops_it(tmp_path):
    """``start`` interrupted (Ctrl-C, or a stop signal turned into one) between fork and ready leaves no server."""
    data = tmp_path / "ls-data"

    def interrupt_once_the_child_exists() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not ls_processes(data):
            time.sleep(0.05)
        _thread.interrupt_main()

    threading.Thread(target=interrupt_once_the_child_exists, daemon=True).start()
    try:
        with pytest.raises(KeyboardInterrupt):
            ls_server.start(data, timeout=120)
        assert ls_processes(data) == [], "the interrupted start left its Label Studio running"
    finally:
        kill_leftovers(data)


@pytest.mark.labelstudio
@pytest.mark.slow
@pytest.mark.parametrize(
    ("stage", "signum"),
    [("booting", signal.SIGTERM),  # a service manager stops the app while the server boots (~5-20 s)
     ("first-setup", signal.SIGINT)],  # Ctrl-C during the minutes of the very first start (`label-studio init`)
)  # fmt: skip
def test_a_signal_while_label_studio_starts_stops_it(tiny_checkpoint, tmp_path, stage, signum):
    """Stopped before its Label Studio is ready, the app stops that child (server or ``init``) and exits cleanly."""
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")} if stage == "first-setup" else {}  # no template: `init` runs
    app = launch_app(tiny_checkpoint, tmp_path / "app", env, embedded_ls_data=tmp_path / "ls-data", wait=False)
    try:
        children = wait_for(lambda: ls_processes(tmp_path), 180, "the Label Studio child to appear", app)
        assert READY not in app.log() and all(parent_of(pid) == app.process.pid for pid in children)
        os.kill(app.process.pid, signum)  # to the app alone, as `kill` or a terminal's Ctrl-C reaches it
        app.process.wait(60)
        wait_for(lambda: not ls_processes(tmp_path), 30, "the Label Studio child to be stopped", app)
        assert app.process.returncode == 128 + signum, app.log()  # handled, not a traceback: the shell's 128 + N
        assert "Traceback" not in app.log()
    finally:
        kill_leftovers(tmp_path, app)


@pytest.mark.labelstudio
@pytest.mark.slow
def test_two_apps_share_one_server_and_neither_signal_leaves_it_running(tiny_checkpoint, tmp_path):
    """Two apps started together on one data dir run one Label Studio; SIGKILL / SIGTERM of its owner stop it.

    The second app reuses the first's server (the record beside the database,
    checked with ``whoami``), takes over with a server of its own when the
    owner is killed (``PR_SET_PDEATHSIG`` stops the owner's), and SIGTERM then
    stops the app and its server promptly, removing the record.
    """
    data = tmp_path / "ls-data"
    apps = [launch_app(tiny_checkpoint, tmp_path / name, embedded_ls_data=data, wait=False) for name in "ab"]
    try:
        for app in apps:
            wait_for(lambda app=app: READY in app.log(), 300, f"{app.log_path.parent.name}'s Label Studio", *apps)
        servers = ls_processes(data)
        assert len(servers) == 1, f"two apps on one data dir started {len(servers)} Label Studio servers"
        record = json.loads((data / ls_server.RECORD_FILE).read_text())
        owner = next(app for app in apps if app.process.pid == record["owner_pid"])
        other = next(app for app in apps if app is not owner)
        assert record["pid"] == servers[0] and parent_of(servers[0]) == owner.process.pid
        assert f"reusing the one pid {servers[0]} runs" in other.log()

        owner.process.send_signal(signal.SIGKILL)  # no cleanup at all: the kernel must stop its server
        owner.process.wait(30)
        wait_for(lambda: servers[0] not in ls_processes(data), 30, "the killed app's Label Studio to stop", *apps)
        wait_for(lambda: other.log().count(READY) == 2, 180, "the other app's own Label Studio", other)
        taken_over = ls_processes(data)
        assert len(taken_over) == 1 and parent_of(taken_over[0]) == other.process.pid

        os.kill(other.process.pid, signal.SIGTERM)  # a service manager / docker stop
        other.process.wait(60)
        assert ls_processes(data) == [], "SIGTERM left the app's Label Studio running"
        assert other.process.returncode == 128 + signal.SIGTERM, other.log()
        assert not (data / ls_server.RECORD_FILE).exists()
    finally:
        kill_leftovers(data, *apps)


def test_a_stale_record_is_ignored(tmp_path):
    """A record naming a dead pid, a reused pid, or a process that is not our server never gets reused."""
    creds = ls_server.load_or_create_credentials(tmp_path)
    closed = f"http://127.0.0.1:{ls_server.free_port()}"
    me, my_start = os.getpid(), ls_server.pid_start_time(os.getpid())
    finished = subprocess.Popen(["true"])
    finished.wait()
    gone = finished.pid
    for record in ({"pid": gone, "url": closed, "start_time": None},
                   {"pid": me, "url": closed, "start_time": "1" + str(my_start)},  # the pid now belongs to another
                   {"pid": me, "url": closed, "start_time": my_start},  # alive, but no server answers there
                   {"pid": "x", "url": closed}, ["not", "a", "record"]):  # fmt: skip
        (tmp_path / ls_server.RECORD_FILE).write_text(json.dumps(record))
        assert ls_server.recorded_server(tmp_path, creds) is None, record
    (tmp_path / ls_server.RECORD_FILE).write_text("{torn")
    assert ls_server.recorded_server(tmp_path, creds) is None
    assert not ls_server.pid_alive(gone) and ls_server.pid_alive(me, my_start) and not ls_server.pid_alive(me, "1")
