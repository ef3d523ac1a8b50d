"""The real ``app.py`` in its own process, on 127.0.0.1, for tests that need the server apart from pytest.

Concurrency and memory figures must be the server's own (not mixed with the
test's clients), and file-access tests need to know the server's upload
cache (``GRADIO_TEMP_DIR``). The process is started in its own process group
and killed with it when the test module ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from florence_ui.labelstudio.server import _die_with_parent, free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LaunchedApp:
    url: str
    process: subprocess.Popen
    temp_dir: Path
    log_path: Path

    def rss_bytes(self) -> int:
        """Resident memory of the server process, from /proc."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def launch_app(checkpoint: Path, folder: Path, extra_env: dict[str, str] | None = None, *,
               embedded_ls_data: Path | None = None, program: list[str] | None = None,
               wait: bool = True, cwd: Path | None = None) -> LaunchedApp:  # fmt: skip
    """Start ``app.py --model <checkpoint>`` and wait until it answers (or fail with its log).

    ``embedded_ls_data`` lets the app start its embedded Label Studio there (on a
    free port; ``FLORENCE_UI_LS_VENV`` as set for the tests); by default it
    starts none. ``program`` replaces ``python app.py`` (e.g. the ``florence-ui
    serve`` console script); ``wait=False`` returns without waiting for the page. ``cwd`` is the folder it is
    started from (default: the repository).
    """
    port = free_port()
    temp_dir = folder / "gradio-cache"
    temp_dir.mkdir(parents=True, exist_ok=True)
    log_path = folder / "app.log"
    # no Label Studio unless the caller configures one in extra_env (then app.py uses it, and starts none)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABEL_STUDIO_")}
    env |= {"GRADIO_TEMP_DIR": str(temp_dir), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    if embedded_ls_data is not None:
        env |= {"FLORENCE_UI_LS_DATA": str(embedded_ls_data), "FLORENCE_UI_LS_PORT": str(free_port())}
    env |= extra_env or {}
    program = program or [sys.executable, str(ROOT / "app.py")]
    command = [*program, "--model", str(checkpoint), "--device", "cpu", "--port", str(port),
               "--max-new-tokens", "16", "--num-beams", "1"]  # fmt: skip
    if embedded_ls_data is None:
        command.append("--no-labelstudio")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])  # this tree, also for console scripts
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=cwd or ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                   preexec_fn=_die_with_parent)  # fmt: skip
    app = LaunchedApp(f"http://127.0.0.1:{port}/", process, temp_dir, log_path)
    if not wait:
        return app
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with {process.returncode}:\n{app.log()}")
        try:
            with urllib.request.urlopen(app.url, timeout=2) as response:
                if response.status == 200:
                    return app
        except OSError:
            time.sleep(0.5)
    app.stop()
    raise RuntimeError(f"app.py did not answer within 180 s:\n{app.log()}")
