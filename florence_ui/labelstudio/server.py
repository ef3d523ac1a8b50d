"""Start and stop a local Label Studio server that lives in its own virtualenv.

Label Studio pins packages that clash with ours, so it is installed apart
(``make labelstudio`` → ``~/.cache/florence-ui-ls-venv``) and run as a child
process: SQLite, bound to 127.0.0.1, with a user and an API token we generate.
Two callers use this module:

* the tests (``tests/support/ls_fixtures.py``): one throw-away server per session in a
  temp dir, stopped (its whole process group) when the session ends;
* the app's embedded default (``start_embedded`` / ``python -m
  florence_ui.labelstudio.server``): a persistent server under the user's data dir whose
  generated credentials are kept in a 0600 file beside its database, so a
  restart reconnects to the same projects.

The first start of a fresh data dir spends ~2 minutes on Django migrations
(2 CPU cores). The migrated, user-less database is therefore kept once per
Label Studio version as a template and copied into each new data dir, which
brings a fresh server up in ~20 s. Readiness is checked with the SDK (``whoami``
with the generated token), which also proves the credentials work.

Lifecycle (issue 12: servers used to outlive the app and pile up on one SQLite
file): every child is registered the moment it exists, and :func:`stop_started`
(an ``atexit`` hook, and the ``serve`` command's ``finally``) stops the process
group of each one this process started, whether the app exits normally, on a
signal turned into an exception, or during start-up. The embedded server is
forked by a supervisor thread that lives as long as the app and asks the
kernel (``PR_SET_PDEATHSIG``, Linux) to stop the child even if the app is
SIGKILLed. What was started is recorded beside the database
(``florence-ui-server.json``) under a ``flock``; a second app on the same data
dir reuses a live server that answers ``whoami`` with the stored token instead
of starting another, never stops it, and starts its own when it goes away.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from florence_ui.errors import LabelStudioServerError

HOST = "127.0.0.1"
DEFAULT_VENV = Path.home() / ".cache" / "florence-ui-ls-venv"
CREDENTIALS_FILE = "florence-ui-credentials.json"
RECORD_FILE = "florence-ui-server.json"  # the running server this data dir belongs to (pid, url, owner)
LOCK_FILE = "florence-ui-server.lock"  # held while one app looks for / starts the server
DEFAULT_EMBEDDED_PORT = 8080
_STARTED_RE = re.compile(r"Starting development server at (http://[\w.\-]+:\d+)/")


def ls_venv(venv: str | os.PathLike | None = None) -> Path:
    """The Label Studio virtualenv: argument, ``FLORENCE_UI_LS_VENV``, or the Makefile's default."""
    return Path(venv or os.environ.get("FLORENCE_UI_LS_VENV") or DEFAULT_VENV)


def ls_binary(venv: str | os.PathLike | None = None) -> Path:
    binary = ls_venv(venv) / "bin" / "label-studio"
    if not binary.exists():
        raise LabelStudioServerError(
            f"Label Studio is not installed at {binary.parent.parent}: run `make labelstudio` "
            "(or set FLORENCE_UI_LS_VENV to a virtualenv with `pip install label-studio`)."
        )
    return binary


def ls_version(venv: str | os.PathLike | None = None) -> str:
    """The installed Label Studio version, read from its dist-info (no slow import)."""
    for dist in (ls_venv(venv) / "lib").glob("python*/site-packages/label_studio-*.dist-info"):
        return dist.name.removeprefix("label_studio-").removesuffix(".dist-info")
    return "unknown"


def free_port(host: str = HOST) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _base_env(data_dir: Path) -> dict[str, str]:
    """Environment of the child: local, quiet, no phoning home, data kept in ``data_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DJANGO_"))}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
        LATEST_VERSION_CHECK="false",
        # This Label Studio serves 127.0.0.1 and its ML backend (`florence-ui ml-backend`) runs on a local address
        # too: Label Studio refuses to connect an ML backend there otherwise ("URL resolves to a reserved network
        # address"). The first checks the backend URL, the second the webhook that connecting a backend creates.
        ML_BLOCK_LOCAL_IP="false",
        SSRF_PROTECTION_ENABLED="false",
        COLLECT_ANALYTICS="false",
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
        PYTHONUNBUFFERED="1",
    )
    return env


def _template_dir(venv: Path) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "florence-ui" / f"labelstudio-{ls_version(venv)}-migrated"


def migrated_template(venv: str | os.PathLike | None = None, timeout: float = 600,
                      die_with_parent: bool = False) -> Path:  # fmt: skip
    """A data dir holding a migrated, user-less database (built once per Label Studio version).

    ``label-studio init`` is a started child like the server: stopped with the
    app (:func:`stop_started`) if it exits during these minutes of migrations.
    """
    venv = ls_venv(venv)
    template = _template_dir(venv)
    if (template / "label_studio.sqlite3").exists():
        return template
    template.parent.mkdir(parents=True, exist_ok=True)
    building = template.with_name(f"{template.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    log_path = template.with_name(f"{template.name}.init-{os.getpid()}.log")
    cmd = _command(ls_binary(venv), ["init", "--quiet", "--data-dir", str(building)], die_with_parent)
    proc = _spawn(cmd, env=_base_env(building), cwd=building, log_path=log_path)
    try:
        proc.wait(timeout)
    except BaseException:  # a timeout, or the app stopping: leave no init behind
        _stop_process(proc)
        shutil.rmtree(building, ignore_errors=True)
        raise
    finally:
        _stop_process(proc)  # reaped already; forget it
        output = log_path.read_text(errors="replace") if log_path.exists() else ""
        log_path.unlink(missing_ok=True)
    if proc.returncode != 0 or not (building / "label_studio.sqlite3").exists():
        shutil.rmtree(building, ignore_errors=True)
        raise LabelStudioServerError(f"`label-studio init` failed (exit code {proc.returncode}):\n{output[-4000:]}")
    try:
        building.rename(template)
    except OSError:  # another process finished first: use theirs
        shutil.rmtree(building, ignore_errors=True)
    return template


# ---- what this process started ------------------------------------------------------------
#: every Label Studio child this process started and has not stopped yet, by pid
_started: dict[int, subprocess.Popen] = {}
#: the record file (``RECORD_FILE``) written for a started child, removed when it stops
_records: dict[int, Path] = {}
_started_lock = threading.Lock()
#: set once the process is going away (:func:`stop_started`): a thread still booting a server must not leave one
_closing = threading.Event()

#: run by Label Studio's own interpreter just before it becomes Label Studio (``os.execv``, same pid): ask the
#: kernel for SIGTERM when the forking thread dies (``PR_SET_PDEATHSIG`` = 1), and give up if that already
#: happened between the fork and the ``prctl``. A wrapper instead of ``preexec_fn``, which is unsafe in a
#: process with threads (the app has many): ctypes would run between ``fork`` and ``exec``.
_PDEATHSIG_EXEC = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"
    "os.getppid() == int(sys.argv[1]) or sys.exit(0)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def pid_start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (``/proc/PID/stat`` field 22), to tell a reused pid apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def pid_alive(pid: int, start_time: str | None = None) -> bool:
    """True while ``pid`` runs (a zombie is not running); with ``start_time``, also that it is the same process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
    except (OSError, IndexError):
        pass  # no /proc (not Linux): kill(0) is all we know
    return start_time is None or pid_start_time(pid) in (start_time, None)


def _command(binary: Path, args: list[str], die_with_parent: bool) -> list[str]:
    """``binary args``, behind the ``PR_SET_PDEATHSIG`` wrapper when asked (and on Linux)."""
    if die_with_parent and sys.platform.startswith("linux"):
        return [str(binary.parent / "python"), "-c", _PDEATHSIG_EXEC, str(os.getpid()), str(binary), *args]
    return [str(binary), *args]


def _spawn(cmd: list[str], *, env: dict[str, str], cwd: Path, log_path: Path) -> subprocess.Popen:
    """Start a child in its own session and register it for :func:`stop_started` before anything else can fail."""
    with _started_lock:
        if _closing.is_set():
            raise LabelStudioServerError("the app is shutting down, so Label Studio was not started")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        _started[proc.pid] = proc
    return proc


def _stop_process(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Stop a child's whole process group (SIGTERM, then SIGKILL), reap it and forget it (and its record)."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    with _started_lock:
        _started.pop(proc.pid, None)
        record = _records.pop(proc.pid, None)
    if record is not None:
        _remove_record(record, proc.pid)


def started_pids() -> frozenset[int]:
    """The pids of the Label Studio children this process has started and not stopped yet."""
    with _started_lock:
        return frozenset(_started)


def stop_started(final: bool = True, keep: frozenset[int] = frozenset()) -> None:
    """Stop every Label Studio this process started (the ``atexit`` hook; ``serve`` also calls it).

    ``final`` marks the process as going away, so a server still being started
    by another thread is refused (or, if already forked, stopped here).
    ``keep``: children that were already running before the caller began (``serve``
    called in a process that has servers of its own: a test session, a notebook)
    are the caller's neighbours', not its own, and stay up.
    Servers this process only reuses are not touched: they are not its own.
    """
    if final:
        _closing.set()
    with _started_lock:
        procs = [proc for pid, proc in _started.items() if pid not in keep]
    for proc in procs:
        _stop_process(proc)


def kill_started_now() -> None:
    """SIGKILL every started process group at once (a second stop signal while cleaning up: leave now).

    Safe in a signal handler: takes no lock (a copy of the dict under the GIL).
    """
    for pid in list(_started):
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)


atexit.register(stop_started)


class StopSignals:
    """Turn SIGTERM / SIGHUP / SIGINT into ``KeyboardInterrupt`` in the main thread, so cleanup runs.

    Python's default SIGTERM (a service manager, ``docker stop``, ``kill``) and
    SIGHUP (a closed terminal) end the process without ``finally`` blocks or
    ``atexit`` hooks, which left the embedded Label Studio running. As an
    interrupt, gradio's ``launch`` closes its server as it does for Ctrl-C and
    the caller's ``finally`` stops what was started. A second signal while
    that cleanup runs kills the started servers and exits at once.
    ``received`` is the first signal, ``exit_code`` the shell's 128 + signal.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.received: int | None = None
        #: set by the caller once it is cleaning up: from then on any signal means "leave now"
        self.cleaning = False
        self._old: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        for sig in self.SIGNALS:
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except (ValueError, OSError):  # not the main thread
                pass
        return self

    def _handler(self, signum: int, frame: object) -> None:
        if self.received is None and not self.cleaning:
            self.received = signum
            raise KeyboardInterrupt
        kill_started_now()
        os._exit(128 + signum)

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]

    @property
    def exit_code(self) -> int:
        return 128 + self.received if self.received else 0


@dataclass
class LocalLabelStudio:
    """A running (or stopped) local Label Studio and the credentials to use it."""

    url: str
    username: str
    password: str = field(repr=False)
    token: str = field(repr=False)
    data_dir: Path
    log_path: Path
    process: subprocess.Popen | None = field(default=None, repr=False)
    port: int = 0
    die_with_parent: bool = False
    #: the pid of a server another process started and this one only uses (never stopped from here)
    reused_pid: int | None = None
    #: set by :meth:`stop`: the server went away because we asked
    stopped: bool = False

    @property
    def running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return self.reused_pid is not None and pid_alive(self.reused_pid)

    def stop(self, timeout: float = 20) -> None:
        """Stop the server's whole process group (SIGTERM, then SIGKILL); a reused server is not ours to stop."""
        self.stopped = True
        if self.process is not None:
            _stop_process(self.process, timeout)

    def restart(self, timeout: float = 300) -> LocalLabelStudio:
        """Start again on the same data dir and port (after :meth:`stop`)."""
        self.stop()
        fresh = start(self.data_dir, port=self.port, username=self.username, password=self.password,
                      token=self.token, timeout=timeout, use_template=False,
                      die_with_parent=self.die_with_parent)  # fmt: skip
        self.process, self.url, self.stopped = fresh.process, fresh.url, False
        return self

    def tail_log(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _die_with_parent() -> None:
    """A ``preexec_fn``: SIGTERM when the parent thread exits (``PR_SET_PDEATHSIG``). For single-threaded
    callers (the tests' launcher); :func:`start` uses the exec wrapper instead."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except OSError:
        pass


def wait_ready(server: LocalLabelStudio, timeout: float = 300) -> None:
    """Wait until the server logs its address and answers ``whoami`` with our token (via the SDK)."""
    from label_studio_sdk import LabelStudio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process is not None and server.process.poll() is not None:
            raise LabelStudioServerError(f"Label Studio exited with code {server.process.returncode}:\n"
                                         f"{server.tail_log()}")  # fmt: skip
        found = _STARTED_RE.search(server.tail_log(20000))
        if found:
            server.url = found.group(1).replace("0.0.0.0", HOST)
            server.port = int(server.url.rsplit(":", 1)[1])
            try:
                LabelStudio(base_url=server.url, api_key=server.token, timeout=5, max_retries=0).users.whoami()
                return
            except Exception:  # noqa: BLE001 - not up yet (connection refused, 5xx while booting)
                pass
        time.sleep(0.5)
    server.stop()
    raise LabelStudioServerError(f"Label Studio did not become ready within {timeout:.0f}s:\n{server.tail_log()}")


def start(
    data_dir: str | os.PathLike,
    *,
    port: int | None = None,
    venv: str | os.PathLike | None = None,
    username: str | None = None,
    password: str | None = None,
    token: str | None = None,
    timeout: float = 300,
    use_template: bool = True,
    die_with_parent: bool = False,
) -> LocalLabelStudio:
    """Start Label Studio on 127.0.0.1 with a non-interactive user and API token; wait until it answers.

    Unset credentials are generated. A fresh ``data_dir`` is seeded from the
    migrated template (``use_template``) so the start takes seconds, not minutes.
    The server runs in its own process group; call :meth:`LocalLabelStudio.stop`
    (it is also stopped if waiting for it fails or is interrupted, and by
    :func:`stop_started` at exit). ``die_with_parent`` (Linux) also has the
    kernel stop it when the calling *thread* ends, even by SIGKILL: call it
    from a thread that lives as long as the server should.
    """
    binary = ls_binary(venv)
    data_dir = Path(data_dir).resolve()
    if use_template and not (data_dir / "label_studio.sqlite3").exists():
        template = migrated_template(venv, die_with_parent=die_with_parent)
        shutil.copytree(template, data_dir, dirs_exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    server = LocalLabelStudio(
        url=f"http://{HOST}:{port}",
        username=username or "florence-ui@localhost",
        password=password or secrets.token_urlsafe(16),
        token=token or secrets.token_hex(20),  # DRF tokens are 40 characters
        data_dir=data_dir,
        log_path=data_dir / "label-studio.log",
        port=port,
        die_with_parent=die_with_parent,
    )
    env = _base_env(data_dir)
    env.update(LABEL_STUDIO_USERNAME=server.username, LABEL_STUDIO_PASSWORD=server.password,
               LABEL_STUDIO_USER_TOKEN=server.token)  # fmt: skip
    cmd = _command(binary, ["start", "--no-browser", "--internal-host", HOST, "--port", str(port),
                            "--data-dir", str(data_dir), "--log-level", "WARNING"], die_with_parent)  # fmt: skip
    server.process = _spawn(cmd, env=env, cwd=data_dir, log_path=server.log_path)
    try:
        wait_ready(server, timeout)
    except BaseException:  # a failure, a timeout or an interrupt while it boots: leave nothing behind
        server.stop()
        raise
    return server


# ---- the app's embedded default ---------------------------------------------------------
def embedded_data_dir() -> Path:
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return Path(os.environ.get("FLORENCE_UI_LS_DATA") or base / "florence-ui" / "labelstudio")


def embedded_port() -> int:
    """The embedded server's port: ``FLORENCE_UI_LS_PORT``, else 8080 (Label Studio's own default)."""
    raw = os.environ.get("FLORENCE_UI_LS_PORT", "").strip()
    if not raw:
        return DEFAULT_EMBEDDED_PORT
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise LabelStudioServerError(f"FLORENCE_UI_LS_PORT={raw!r} is not a port: set it to a number from 1 to "
                                     f"65535, or unset it for {DEFAULT_EMBEDDED_PORT}")  # fmt: skip
    return int(raw)


def load_or_create_credentials(data_dir: Path) -> dict[str, str]:
    path = data_dir / CREDENTIALS_FILE
    if path.exists():
        return json.loads(path.read_text())
    data_dir.mkdir(parents=True, exist_ok=True)
    creds = {"username": "florence-ui@localhost", "password": secrets.token_urlsafe(16),
             "token": secrets.token_hex(20)}  # fmt: skip
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(creds, fh)
    return creds


@contextlib.contextmanager
def _data_dir_lock(data_dir: Path):
    """Hold an exclusive ``flock`` on the data dir while one app looks for its server or starts it.

    Two apps started together would otherwise both find no server and both
    start one on the same SQLite file. The lock goes with the file descriptor,
    so a killed app never leaves it held (and the child does not inherit it).
    """
    import fcntl

    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_record(server: LocalLabelStudio) -> None:
    """Note the running server beside its database (process bookkeeping, replaced atomically, 0600)."""
    assert server.process is not None
    path = server.data_dir / RECORD_FILE
    record = {"pid": server.process.pid, "start_time": pid_start_time(server.process.pid), "url": server.url,
              "port": server.port, "owner_pid": os.getpid(), "started_at": time.time()}  # fmt: skip
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh)
    os.replace(tmp, path)
    with _started_lock:
        _records[server.process.pid] = path


def _read_record(data_dir: Path) -> dict | None:
    try:
        record = json.loads((data_dir / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _remove_record(path: Path, pid: int) -> None:
    """Remove the record if it still describes ``pid`` (another app may have written its own since)."""
    record = _read_record(path.parent)
    if record is not None and record.get("pid") == pid:
        with contextlib.suppress(OSError):
            path.unlink()


def recorded_server(data_dir: Path, creds: dict[str, str]) -> LocalLabelStudio | None:
    """The server the record names, if that process still runs and answers ``whoami`` with our token.

    A stale record (dead pid, a pid now used by another process, a server that
    does not know our token) is ignored: the caller starts a fresh server.
    """
    from label_studio_sdk import LabelStudio

    record = _read_record(data_dir)
    if record is None:
        return None
    pid, url, started = record.get("pid"), record.get("url"), record.get("start_time")
    if not isinstance(pid, int) or not isinstance(url, str) or not pid_alive(pid, started):
        return None
    try:
        LabelStudio(base_url=url, api_key=creds["token"], timeout=5, max_retries=0).users.whoami()
    except Exception:  # noqa: BLE001 - not our server, or not answering: start our own
        return None
    return LocalLabelStudio(url=url, username=creds["username"], password=creds["password"], token=creds["token"],
                            data_dir=data_dir, log_path=data_dir / "label-studio.log", port=int(record.get("port") or 0),
                            reused_pid=pid)  # fmt: skip


def start_embedded(data_dir: str | os.PathLike | None = None, port: int | None = None, timeout: float = 600,
                   die_with_parent: bool = False) -> LocalLabelStudio:  # fmt: skip
    """The persistent local Label Studio (same credentials and projects on every start): reuse or start.

    A server already running on this data dir (another app's, see
    :data:`RECORD_FILE`) is reused: the result has ``reused_pid`` set and its
    ``stop`` does nothing. Otherwise one is started on ``port``
    (``FLORENCE_UI_LS_PORT``, else 8080, so task links stay valid across
    restarts; Label Studio moves to the next free port when it is taken and the
    real one is read back) and recorded.
    """
    data_dir = Path(data_dir or embedded_data_dir()).resolve()
    with _data_dir_lock(data_dir):
        creds = load_or_create_credentials(data_dir)
        server = recorded_server(data_dir, creds)
        if server is None:
            server = start(data_dir, port=port or embedded_port(), timeout=timeout, die_with_parent=die_with_parent,
                           **creds)  # fmt: skip
            _write_record(server)
    return server


def labelstudio_configured() -> bool:
    """True when the user pointed us at a Label Studio (the SDK's environment variables)."""
    return bool(os.environ.get("LABEL_STUDIO_URL") and os.environ.get("LABEL_STUDIO_API_KEY"))


#: the process's embedded server, shared like the loaded model: one per process, set by its supervisor thread
_embedded: dict[str, object] = {}


def forget_embedded() -> None:
    """Forget the process's embedded server (its state line goes back to "none asked for"); it is not stopped."""
    _embedded.clear()


def embedded_status() -> str | None:
    """A line for the UI about the embedded Label Studio (``None`` when none was asked for)."""
    state = _embedded.get("state")
    if state == "starting":
        return "The local Label Studio is still starting (about 20 s, 2 minutes the very first time); try again."
    if state == "failed":
        return f"The local Label Studio failed to start: {_embedded.get('error')}"
    if state == "ready":
        server = _embedded["server"]
        assert isinstance(server, LocalLabelStudio)
        return (f"This is the local Label Studio started with the app: open {server.url} and log in as "
                f"{server.username} (password in {server.data_dir / CREDENTIALS_FILE}).")  # fmt: skip
    return None


#: the supervisor threads started in this process (one per :func:`start_embedded_if_unconfigured` that started one)
_supervisors: list[threading.Thread] = []


def supervising() -> bool:
    """True while a supervisor thread may still start a server (so a final stop must refuse later starts)."""
    return any(t.is_alive() for t in _supervisors)


def _say(message: str) -> None:
    print(f"[florence-ui] {message}", file=sys.stderr, flush=True)


def _supervise(kwargs: dict, result: list[LocalLabelStudio], ready: threading.Event) -> None:
    """The embedded server's thread, for the app's whole life: find or start the server, publish it, wait on it.

    It forks the child, so it is the "parent" ``PR_SET_PDEATHSIG`` watches: it
    must not return while that child runs (it waits on it). A reused server
    (another app's) is watched instead; when it goes away, this app starts its own.
    """
    while not _closing.is_set():
        _embedded.update(state="starting")
        try:
            server = start_embedded(die_with_parent=True, **kwargs)
        except (LabelStudioServerError, OSError, subprocess.SubprocessError) as exc:
            if not _closing.is_set():
                _embedded.update(state="failed", error=str(exc).splitlines()[0])
                _say(f"embedded Label Studio failed to start: {exc}")
            break
        os.environ["LABEL_STUDIO_URL"], os.environ["LABEL_STUDIO_API_KEY"] = server.url, server.token
        _embedded.update(state="ready", server=server)
        whose = f"reusing the one pid {server.reused_pid} runs" if server.reused_pid else "started"
        _say(f"embedded Label Studio ready at {server.url} ({whose}; user {server.username})")
        if not result:
            result.append(server)
            ready.set()
        if server.process is not None:  # ours: wait on it, staying its parent thread
            code = server.process.wait()
            if _closing.is_set() or server.stopped:
                if _embedded.get("server") is server:
                    _embedded.clear()
            else:
                _embedded.update(state="failed", error=f"Label Studio exited with code {code}; see {server.log_path}")
                _say(f"embedded Label Studio exited with code {code}; see {server.log_path}")
            break
        while server.running and not _closing.wait(1.0):  # another app's: watch it
            pass
        if not _closing.is_set():
            _say("the Label Studio this app reused has stopped (its app exited); starting one of this app's own")
            kwargs = {**kwargs, "port": server.port or kwargs.get("port")}  # same address: links stay valid
    ready.set()


def start_embedded_if_unconfigured(background: bool = True, **kwargs) -> LocalLabelStudio | None:
    """The app's hook: with no ``LABEL_STUDIO_URL``/``LABEL_STUDIO_API_KEY``, bring up the local one.

    When it is ready, both variables are set in this process's environment, so
    the Label Studio tab's defaults connect to it (the key stays server-side,
    never in the page). A supervisor thread (:func:`_supervise`) starts it, or
    reuses the one another app runs on the same data dir, and keeps watch for
    the app's life. ``background`` returns at once, so the app is usable while
    Label Studio boots; otherwise it returns the ready server (``None`` if it
    failed). A server this process started stops when the process exits
    (:func:`stop_started`), and with ``PR_SET_PDEATHSIG`` even if it is killed.
    Does nothing (returns ``None``) when Label Studio is configured or not installed.
    """
    if labelstudio_configured():
        return None
    try:
        ls_binary()
    except LabelStudioServerError as exc:
        _say(f"embedded Label Studio disabled: {exc}")
        return None
    _embedded.update(state="starting")
    result: list[LocalLabelStudio] = []
    ready = threading.Event()
    thread = threading.Thread(target=_supervise, args=(kwargs, result, ready), name="embedded-label-studio",
                              daemon=True)  # fmt: skip
    _supervisors.append(thread)
    thread.start()
    if background:
        return None
    ready.wait()
    return result[0] if result else None


def main(argv: list[str] | None = None) -> int:
    """``python -m florence_ui.labelstudio.server``: run the embedded Label Studio in the foreground."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help=f"default: {embedded_data_dir()}")
    parser.add_argument("--port", type=int, default=None, help="default: $FLORENCE_UI_LS_PORT, else 8080")
    parser.add_argument("--print-password", action="store_true", help="also print the web login password")
    args = parser.parse_args(argv)
    with StopSignals() as stop:
        try:
            server = start_embedded(args.data_dir, port=args.port)
            whose = f" (already running, pid {server.reused_pid}: reused)" if server.reused_pid else ""
            print(f"Label Studio ready at {server.url}{whose}  user: {server.username}")
            if args.print_password:
                print(f"password: {server.password}")
            print(f"credentials (API token, password): {server.data_dir / CREDENTIALS_FILE}", flush=True)
            while server.running:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        except LabelStudioServerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            stop.cleaning = True
            stop_started()
    return stop.exit_code


if __name__ == "__main__":
    sys.exit(main())
