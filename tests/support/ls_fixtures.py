"""pytest plugin: a real Label Studio server, and the golden outputs as reviewed labels.

``labelstudio_server`` starts one ``label-studio`` per test session from its
own virtualenv (``FLORENCE_UI_LS_VENV``, default ``~/.cache/florence-ui-ls-venv``;
``make labelstudio`` creates it): a temp data dir, 127.0.0.1 on a free port, a
generated user, password and legacy API token. It yields the
:class:`~florence_ui.labelstudio.server.LocalLabelStudio` (``url``, ``token``,
``username``, ``password``, ``stop()``, ``restart()``) and stops the server's
process group when the session ends. Any test may use it; a test that stops it
must restart it (``labelstudio_server.restart()``) before returning.

``golden_labeled`` turns every golden Florence-2 generation into accepted
regions (``FlorenceEngine.parse`` → ``regions_from_result``), grouped per
golden image, with deterministic scores so score round trips can be checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image


@pytest.fixture(scope="session")
def labelstudio_server(tmp_path_factory):
    from florence_ui.labelstudio.server import LabelStudioServerError, ls_binary, start

    try:
        ls_binary()
    except LabelStudioServerError as exc:
        pytest.fail(str(exc))
    server = start(tmp_path_factory.mktemp("labelstudio"), timeout=600, die_with_parent=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ls_settings(labelstudio_server):
    """Settings for the test server (legacy token); short timeouts so fault tests stay quick."""
    from florence_ui.labelstudio.client import LSSettings

    if not labelstudio_server.running:  # a failed fault test left it stopped
        labelstudio_server.restart()
    return LSSettings(url=labelstudio_server.url, api_key=labelstudio_server.token, timeout=20, max_retries=0)


@pytest.fixture(scope="session")
def ls_personal_token(labelstudio_server) -> str:
    """A personal access token (JWT refresh token) made through the SDK with the legacy token."""
    from label_studio_sdk import LabelStudio

    client = LabelStudio(base_url=labelstudio_server.url, api_key=labelstudio_server.token)
    return client.tokens.create().token


def golden_items(engine, golden: dict) -> dict[str, object]:
    """Golden image name → LabeledImage with every golden answer on it accepted."""
    from florence_ui.core.labels import ImageText, LabeledImage, regions_from_result

    colours = {"beetle": (40, 160, 150), "car": (200, 190, 60), "australia": (90, 90, 200), "book_cover": (30, 30, 30)}
    items: dict[str, LabeledImage] = {}
    for vec in golden["vectors"]:
        width, height = vec["image_size"]
        name = vec["image"]
        item = items.get(name)
        if item is None:
            image = Image.new("RGB", (width, height), colours.get(name, (128, 128, 128)))
            item = items[name] = LabeledImage(width, height, image=image, model="microsoft/Florence-2-base-ft",
                                              revision="main")  # fmt: skip
        result = engine.parse(vec["task"], vec["generated_text"], (width, height), text=vec["text_input"])
        for region in regions_from_result(result):
            region.score = round(0.5 + 0.05 * (len(item.regions) % 10), 2)
            item.regions.append(region)
        if result.text:
            item.texts.append(ImageText(vec["task"], result.text, 0.8))
    return items


@pytest.fixture(scope="session")
def golden_labeled(engine, golden):
    return golden_items(engine, golden)


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


@pytest.fixture(scope="session")
def golden_push(labelstudio_server, golden_labeled):
    """The golden labels pushed once into a new project: (project id, items, report)."""
    from florence_ui.labelstudio.client import LSSettings, create_project, push_images

    settings = LSSettings(url=labelstudio_server.url, api_key=labelstudio_server.token)
    items = list(golden_labeled.values())
    project = create_project(settings, "Golden Florence-2 outputs", items)
    return project, items, push_images(settings, project, items)
