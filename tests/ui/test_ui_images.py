"""Opening user images: EXIF orientation, odd modes, and clear errors for bad files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from florence_ui.core.images import ImageLoadError, open_image, rotate_quarter_turns, to_rgb


def test_exif_orientation_is_applied(tmp_path):
    stored = Image.new("RGB", (40, 20), "red")
    stored.paste((0, 0, 255), (0, 0, 10, 20))  # blue on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif, quality=100)
    upright = open_image(path)
    assert upright.size == (20, 40) and upright.mode == "RGB"
    assert upright.getpixel((10, 2))[2] > 200  # the blue band is now on top


def test_modes_become_rgb():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)  # transparency on white
    sixteen = Image.fromarray(np.array([[0, 65535]], dtype=np.uint16))
    assert to_rgb(sixteen).getpixel((1, 0)) == (255, 255, 255)
    assert open_image(np.zeros((3, 5, 3), dtype=np.uint8)).size == (5, 3)
    buf = io.BytesIO()
    Image.new("L", (7, 3), 128).save(buf, format="PNG")
    assert open_image(buf.getvalue()).mode == "RGB"


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"hello, I am text", "not an image"), (None, "does not exist")],
)
def test_bad_files_explain_themselves(tmp_path, content, message):
    path = tmp_path / "upload.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageLoadError, match=message):
        open_image(path)


def test_truncated_and_huge_images(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (300, 300), "green").save(buf, format="PNG")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageLoadError, match="damaged or truncated"):
        open_image(truncated)
    whole = tmp_path / "whole.png"
    whole.write_bytes(buf.getvalue())
    with pytest.raises(ImageLoadError, match="resize it first"):
        open_image(whole, max_pixels=1000)
    with pytest.raises(ImageLoadError, match="No image"):
        open_image(None)


def test_quarter_turns_are_clockwise():
    image = Image.new("RGB", (2, 1))
    image.putpixel((0, 0), (255, 0, 0))
    turned = rotate_quarter_turns(image, 1)
    assert turned.size == (1, 2) and turned.getpixel((0, 0)) == (255, 0, 0)
    assert rotate_quarter_turns(image, 4) is image
