"""The launched app serves no file outside its own upload cache and assets.

Requests go straight to the server's file routes with raw (un-normalised)
paths: absolute paths to secrets and to the app's own code and model,
``..`` segments from inside the cache, URL-encoded and double-encoded
traversal, and a symlink planted inside the cache that points outside. A
file the app itself produced is the positive control: it is served, so a
refusal below means a refusal, not a broken route.
"""

from __future__ import annotations

import http.client
from pathlib import Path
from urllib.parse import quote, urlparse

import pytest
from gradio_client import Client, handle_file

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
ROCKET = ROOT / "florence_ui" / "examples" / "rocket.jpg"
SECRET = "florence-ui-file-access-canary"


def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET with the path sent byte for byte (no client-side normalisation of ``..`` or ``%2e``)."""
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=20)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def served_file(launched_app) -> str:
    """A path the app legitimately serves: the annotated PNG of a real request."""
    client = Client(launched_app.url, verbose=False)
    image_path, _ = client.predict(handle_file(str(ROCKET)), "<OD>", "", [], 16, 1, api_name="/run_task")
    # gradio_client downloaded its own copy; the server-side one lives in the server's cache
    cached = sorted(launched_app.temp_dir.rglob("*.png"), key=lambda p: p.stat().st_mtime)
    assert cached, "the server cached no output file"
    assert Path(image_path).stat().st_size > 0
    return str(cached[-1])


@pytest.fixture(scope="module")
def outside_secret(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("outside") / "secret.txt"
    path.write_text(SECRET)
    return path


def test_the_apps_own_output_is_served(launched_app, served_file):
    status, body = raw_get(launched_app.url, f"/gradio_api/file={served_file}")
    assert status == 200 and body[:8] == b"\x89PNG\r\n\x1a\n"


def _attacks(cache: Path, served: str, secret: Path) -> dict[str, str]:
    inside = Path(served).parent
    rel_to_secret = "../" * len(inside.parts) + str(secret).lstrip("/")
    return {
        "absolute /etc/passwd": "/etc/passwd",
        "absolute secret file": str(secret),
        "absolute app source": str(ROOT / "app.py"),
        "absolute /proc/self/environ": "/proc/self/environ",
        "dot-dot from the cache": f"{inside}/{rel_to_secret}",
        "dot-dot to /etc/passwd": f"{cache}/../../../../../../etc/passwd",
        "url-encoded dot-dot": f"{inside}/" + quote(rel_to_secret, safe=""),
        "url-encoded slashes and dots": quote(f"{cache}/../../../../../../etc/passwd", safe=""),
        "double-encoded dot-dot": f"{inside}/" + quote(quote(rel_to_secret, safe=""), safe=""),
        "dot-dot after the served file": f"{served}/../../../../../../../etc/passwd",
        "backslash traversal": f"{inside}\\..\\..\\..\\..\\..\\..\\etc\\passwd",
    }


@pytest.mark.parametrize("route", ["/gradio_api/file=", "/file=", "/gradio_api/file/"])
def test_traversal_and_absolute_paths_are_refused(launched_app, served_file, outside_secret, route):
    for name, path in _attacks(launched_app.temp_dir, served_file, outside_secret).items():
        status, body = raw_get(launched_app.url, route + path)
        assert status != 200 or (b"root:" not in body and SECRET.encode() not in body and b"import" not in body), (
            f"{name}: {route}{path} → {status} {body[:200]!r}"
        )
        assert b"root:x:" not in body and SECRET.encode() not in body, name


def test_a_symlink_planted_in_the_cache_is_refused(launched_app, served_file, outside_secret):
    link = Path(served_file).parent / "planted.txt"
    link.symlink_to(outside_secret)
    dir_link = launched_app.temp_dir / "planted-dir"
    dir_link.symlink_to(outside_secret.parent, target_is_directory=True)
    try:
        for path in (str(link), f"{dir_link}/{outside_secret.name}"):
            status, body = raw_get(launched_app.url, f"/gradio_api/file={path}")
            assert SECRET.encode() not in body, f"{path} → {status} served the file outside the cache"
            assert status in (400, 403, 404), (path, status)
    finally:
        link.unlink()
        dir_link.unlink()
