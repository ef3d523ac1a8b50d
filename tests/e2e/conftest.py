"""Fixtures for the browser and gradio_client tests: the app served on 127.0.0.1 on a free port.

Two servers: one over the recorded-answer engine (real Florence-2 generations
replayed through the real parser, so labels and boxes mean something) and one
over the tiny random checkpoint (the real generate path). Each is built with
``build_app``, launched without blocking, and closed when its tests end.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from app_server import serve
from launched_app import LaunchedApp, launch_app
from recorded_engine import RecordedEngine


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


@pytest.fixture(scope="session")
def launched_app(tiny_checkpoint, tmp_path_factory) -> Iterator[LaunchedApp]:
    """``python app.py`` on the tiny checkpoint in its own process (its own memory, its own upload cache)."""
    app = launch_app(tiny_checkpoint, tmp_path_factory.mktemp("launched-app"))
    try:
        yield app
    finally:
        app.stop()
