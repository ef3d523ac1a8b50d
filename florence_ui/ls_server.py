"""Start and stop a local Label Studio server that lives in its own virtualenv.

Label Studio pins packages that clash with ours, so it is installed apart
(``make labelstudio`` → ``~/.cache/florence-ui-ls-venv``) and run as a child
process: SQLite, bound to 127.0.0.1, with a user and an API token we generate.
Two callers use this module:

* the tests (``tests/ls_fixtures.py``): one throw-away server per session in a
  temp dir, stopped (its whole process group) when the session ends;
* the app's embedded default (``start_embedded`` / ``python -m
  florence_ui.ls_server``): a persistent server under the user's data dir whose
  generated credentials are kept in a 0600 file beside its database, so a
  restart reconnects to the same projects.

The first start of a fresh data dir spends ~2 minutes on Django migrations
(2 CPU cores). The migrated, user-less database is therefore kept once per
Label Studio version as a template and copied into each new data dir, which
brings a fresh server up in ~20 s. Readiness is checked with the SDK (``whoami``
with the generated token), which also proves the credentials work.
"""

from __future__ import annotations

import argparse
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

HOST = "127.0.0.1"
DEFAULT_VENV = Path.home() / ".cache" / "florence-ui-ls-venv"
CREDENTIALS_FILE = "florence-ui-credentials.json"
_STARTED_RE = re.compile(r"Starting development server at (http://[\w.\-]+:\d+)/")


class LabelStudioServerError(RuntimeError):
    """The local Label Studio could not be found, started or reached."""


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
        COLLECT_ANALYTICS="false",
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
        PYTHONUNBUFFERED="1",
    )
    return env


def _template_dir(venv: Path) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "florence-ui" / f"labelstudio-{ls_version(venv)}-migrated"


def migrated_template(venv: str | os.PathLike | None = None, timeout: float = 600) -> Path:
    """A data dir holding a migrated, user-less database (built once per Label Studio version)."""
    venv = ls_venv(venv)
    template = _template_dir(venv)
    if (template / "label_studio.sqlite3").exists():
        return template
    template.parent.mkdir(parents=True, exist_ok=True)
    building = template.with_name(f"{template.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    result = subprocess.run(
        [str(ls_binary(venv)), "init", "--quiet", "--data-dir", str(building)],
        env=_base_env(building),
        cwd=building,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0 or not (building / "label_studio.sqlite3").exists():
        shutil.rmtree(building, ignore_errors=True)
        raise LabelStudioServerError(f"`label-studio init` failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    try:
        building.rename(template)
    except OSError:  # another process finished first: use theirs
        shutil.rmtree(building, ignore_errors=True)
    return template


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

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 20) -> None:
        """Stop the server's whole process group (SIGTERM, then SIGKILL)."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def restart(self, timeout: float = 300) -> LocalLabelStudio:
        """Start again on the same data dir and port (after :meth:`stop`)."""
        self.stop()
        fresh = start(self.data_dir, port=self.port, username=self.username, password=self.password,
                      token=self.token, timeout=timeout, use_template=False,
                      die_with_parent=self.die_with_parent)  # fmt: skip
        self.process, self.url = fresh.process, fresh.url
        return self

    def tail_log(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent thread exits (``PR_SET_PDEATHSIG``)."""
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
    The server runs in its own process group; call :meth:`LocalLabelStudio.stop`.
    ``die_with_parent`` (Linux; tests) also has the kernel stop it if the calling
    thread dies without cleaning up (a killed pytest leaves no server behind).
    """
    binary = ls_binary(venv)
    data_dir = Path(data_dir).resolve()
    if use_template and not (data_dir / "label_studio.sqlite3").exists():
        template = migrated_template(venv)
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
    )
    env = _base_env(data_dir)
    env.update(LABEL_STUDIO_USERNAME=server.username, LABEL_STUDIO_PASSWORD=server.password,
               LABEL_STUDIO_USER_TOKEN=server.token)  # fmt: skip
    cmd = [str(binary), "start", "--no-browser", "--internal-host", HOST, "--port", str(port),
           "--data-dir", str(data_dir), "--log-level", "WARNING"]  # fmt: skip
    with open(server.log_path, "wb") as log:
        server.process = subprocess.Popen(cmd, env=env, cwd=data_dir, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True,
                                          preexec_fn=_die_with_parent if die_with_parent else None)  # fmt: skip
    server.die_with_parent = die_with_parent
    wait_ready(server, timeout)
    return server


# ---- the app's embedded default ---------------------------------------------------------
def embedded_data_dir() -> Path:
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return Path(os.environ.get("FLORENCE_UI_LS_DATA") or base / "florence-ui" / "labelstudio")


def _load_or_create_credentials(data_dir: Path) -> dict[str, str]:
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


def start_embedded(data_dir: str | os.PathLike | None = None, port: int | None = 8080,
                   timeout: float = 600) -> LocalLabelStudio:  # fmt: skip
    """Start the persistent local Label Studio (same credentials and projects on every start).

    Port 8080 by default, so task links stay valid across restarts (Label Studio
    moves to the next free port when it is taken; the real one is read back).
    """
    data_dir = Path(data_dir or embedded_data_dir())
    creds = _load_or_create_credentials(data_dir)
    return start(data_dir, port=port, timeout=timeout, **creds)


def labelstudio_configured() -> bool:
    """True when the user pointed us at a Label Studio (the SDK's environment variables)."""
    return bool(os.environ.get("LABEL_STUDIO_URL") and os.environ.get("LABEL_STUDIO_API_KEY"))


#: the process's embedded server, shared like the loaded model: one per process, set once by its thread
_embedded: dict[str, object] = {}


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


def start_embedded_if_unconfigured(background: bool = True, **kwargs) -> LocalLabelStudio | None:
    """The app's hook: with no ``LABEL_STUDIO_URL``/``LABEL_STUDIO_API_KEY``, bring up the local one.

    When it is ready, both variables are set in this process's environment, so
    the Label Studio tab's defaults connect to it (the key stays server-side,
    never in the page). ``background`` starts it in a daemon thread and returns
    at once, so the app is usable while Label Studio boots; otherwise it returns
    the ready server. The server stops when the app exits (``atexit``). Does
    nothing (returns ``None``) when Label Studio is configured or not installed.
    """
    if labelstudio_configured():
        return None
    try:
        ls_binary()
    except LabelStudioServerError as exc:
        print(f"[florence-ui] embedded Label Studio disabled: {exc}", file=sys.stderr)
        return None
    _embedded.update(state="starting")

    def run() -> LocalLabelStudio | None:
        import atexit

        try:
            server = start_embedded(**kwargs)
        except (LabelStudioServerError, OSError, subprocess.SubprocessError) as exc:
            _embedded.update(state="failed", error=str(exc).splitlines()[0])
            print(f"[florence-ui] embedded Label Studio failed to start: {exc}", file=sys.stderr)
            return None
        atexit.register(server.stop)
        os.environ["LABEL_STUDIO_URL"], os.environ["LABEL_STUDIO_API_KEY"] = server.url, server.token
        _embedded.update(state="ready", server=server)
        print(f"[florence-ui] embedded Label Studio ready at {server.url} (user {server.username})", file=sys.stderr)
        return server

    if not background:
        return run()
    threading.Thread(target=run, name="embedded-label-studio", daemon=True).start()
    return None


def main(argv: list[str] | None = None) -> int:
    """``python -m florence_ui.ls_server``: run the embedded Label Studio in the foreground."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help=f"default: {embedded_data_dir()}")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--print-password", action="store_true", help="also print the web login password")
    args = parser.parse_args(argv)
    server = start_embedded(args.data_dir, port=args.port)
    print(f"Label Studio ready at {server.url}  user: {server.username}")
    if args.print_password:
        print(f"password: {server.password}")
    print(f"credentials (API token, password): {server.data_dir / CREDENTIALS_FILE}")
    try:
        while server.running:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
