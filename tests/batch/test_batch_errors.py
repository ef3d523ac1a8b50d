"""Batch failures are told apart by type, never by reading their messages.

An unreadable file is an :class:`~florence_ui.errors.ImageLoadError` whose
sentence is the one the user has always seen ("the file ..."), and a model
that cannot load is recognised under Ray's wrappers by its class: an error
that merely *mentions* loading is not mistaken for one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from test_batch import FAST

from florence_ui.batch.runner import Job, load_image, process_images, read_images
from florence_ui.errors import FlorenceUIError, ImageLoadError, ModelLoadError


@pytest.fixture
def bad_files(tmp_path) -> dict[str, Path]:
    files = {"empty": tmp_path / "empty.png", "broken": tmp_path / "broken.jpg", "folder": tmp_path / "folder.png"}
    files["empty"].write_bytes(b"")
    files["broken"].write_bytes(b"\xff\xd8\xff\xe0" + b"not really a jpeg" * 20)
    files["folder"].mkdir()
    return files


def test_unreadable_files_are_image_load_errors_with_the_batch_wording(bad_files):
    reasons = {}
    for what, path in bad_files.items():
        with pytest.raises(ImageLoadError) as caught:
            load_image(str(path))
        assert isinstance(caught.value, ValueError) and isinstance(caught.value, FlorenceUIError)
        reasons[what] = str(caught.value)
    assert reasons["empty"] == "the file is empty (0 bytes): upload the image again."
    assert reasons["broken"].startswith(("the file looks damaged", "the file is not an image"))
    assert reasons["folder"] == "cannot read file: Is a directory"
    assert not any("uploaded" in reason for reason in reasons.values())  # the CLI read a file, nobody uploaded


def test_a_failing_job_in_the_runner_keeps_its_outcome(engine, bad_files, tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (32, 24), (10, 120, 200)).save(good)
    paths = [str(bad_files["empty"]), str(bad_files["broken"]), str(good)]
    decoded = read_images(paths)
    assert [type(decoded[p]) for p in paths[:2]] == [ImageLoadError, ImageLoadError]
    empty_out, broken_out, good_out = process_images(engine, [(p, [Job(p, "<CAPTION>")]) for p in paths], FAST)
    assert empty_out.failures == [{"image": paths[0], "task": None, "error": str(decoded[paths[0]])}]
    assert broken_out.failures == [{"image": paths[1], "task": None, "error": str(decoded[paths[1]])}]
    assert not empty_out.lines and not broken_out.lines
    assert [line["task"] for line in good_out.lines] == ["<CAPTION>"] and not good_out.failures


def test_a_model_load_error_is_found_under_rays_wrappers_by_its_type():
    ray = pytest.importorskip("ray", reason="ray[data] is an optional extra: pip install 'florence-ui[ray]'")
    from florence_ui.batch.ray_runner import model_load_error

    message = "Could not load Florence-2 model '/nowhere': it does not exist.\nFix: give a checkpoint folder"

    @ray.remote
    def load() -> None:
        raise ModelLoadError(message)

    @ray.remote
    def mention() -> None:
        raise RuntimeError(f"a log line quoting: {message}")

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=1, include_dashboard=False, object_store_memory=100 * 1024**2, logging_level="warning")
    try:
        with pytest.raises(Exception) as wrapped:
            ray.get(load.remote())
        with pytest.raises(Exception) as quoted:
            ray.get(mention.remote())
    finally:
        if started:
            ray.shutdown()
    found = model_load_error(wrapped.value)
    assert isinstance(found, ModelLoadError) and str(found) == message
    assert model_load_error(quoted.value) is None  # the text alone is not a ModelLoadError
