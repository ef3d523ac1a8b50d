"""Serving the app in-process for tests: 127.0.0.1, a free port, the product's own limits, closed afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from florence_ui.labelstudio.server import free_port
from florence_ui.model.engine import GenerationSettings
from florence_ui.ui.app import build_app, launch_options

TEST_SETTINGS = GenerationSettings(max_new_tokens=24, num_beams=1)


@contextmanager
def serve(engine, settings: GenerationSettings = TEST_SETTINGS) -> Iterator[str]:
    """Launch the app on 127.0.0.1:<free port>; yields its URL and stops it afterwards."""
    demo = build_app(engine, settings=settings)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
