"""Fixtures for the browser and gradio_client tests: the app served on 127.0.0.1 on a free port.

Two servers: one over the recorded-answer engine (real Florence-2 generations
replayed through the real parser, so labels and boxes mean something) and one
over the tiny random checkpoint (the real generate path). Each is built with
``build_app``, launched without blocking, and closed when its tests end.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from recorded_engine import RecordedEngine

from florence_ui.engine import GenerationSettings
from florence_ui.ui.app import build_app

TEST_SETTINGS = GenerationSettings(max_new_tokens=24, num_beams=1)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(engine, settings: GenerationSettings = TEST_SETTINGS) -> Iterator[str]:
    """Launch the app on 127.0.0.1:<free port>; yields its URL and stops it afterwards."""
    demo = build_app(engine, settings=settings)
    demo.queue(default_concurrency_limit=1)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="session")
def recorded_engine(tiny_checkpoint, golden) -> RecordedEngine:
    return RecordedEngine.from_checkpoint(tiny_checkpoint, golden)


@pytest.fixture(scope="module")
def recorded_app(recorded_engine) -> Iterator[str]:
    with serve(recorded_engine) as url:
        yield url


@pytest.fixture(scope="module")
def tiny_app(engine) -> Iterator[str]:
    with serve(engine) as url:
        yield url
