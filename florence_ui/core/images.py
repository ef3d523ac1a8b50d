"""Opening user images: EXIF orientation honoured, every format problem a sentence.

Phones store pictures sideways and record the turn in the EXIF ``Orientation``
tag; browsers apply it when they show the picture, so boxes drawn on it are in
the turned frame. Florence-2 must see the same frame, hence ``exif_transpose``
here, once, for every way an image enters (upload, example, API, CLI). Bad
files (not an image, truncated, absurdly large) raise :class:`ImageLoadError`
with a message the UI shows as-is. Pure PIL, no gradio.

:func:`image_identity` is the one rule for "which photo is this" (Label
Studio's task key, export names, the page's review archive): the sha256 of the
file's bytes when there is a file, else of a canonical lossless encoding of
the pixels. The UI, the CLI and :class:`~florence_ui.core.labels.LabeledImage` all
call it, so one photo pushed from anywhere finds the same task.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from florence_ui.core import limits
from florence_ui.errors import ImageLoadError

SUPPORTED = "JPEG, PNG, WebP, GIF, BMP or TIFF"


def _describe(source: Any) -> str:
    if isinstance(source, str | Path):
        return f"'{Path(source).name}'"
    return "the uploaded file"


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode → 8-bit RGB; transparency is flattened onto white, 16-bit scaled down."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / (high - low) * 255.0 if high > low else np.zeros_like(array)
        return Image.fromarray(scaled.round().astype(np.uint8), "L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _check_size(image: Image.Image, name: str, max_pixels: int) -> None:
    if image.width * image.height > max_pixels:
        raise ImageLoadError(
            f"{name} is {image.width}×{image.height} pixels, more than the {max_pixels:,} allowed; "
            "resize it first (operators: FLORENCE_UI_MAX_PIXELS)."
        )
    if image.width < 1 or image.height < 1:
        raise ImageLoadError(f"{name} has no pixels ({image.width}×{image.height}).")


def open_image(
    source: str | Path | bytes | Image.Image | np.ndarray, *, max_pixels: int | None = None, name: str | None = None
) -> Image.Image:
    """Open a path, bytes, array or PIL image as an upright RGB ``PIL.Image``.

    The first frame of an animation is used. Raises :class:`ImageLoadError` for
    anything that is not a readable image. ``max_pixels`` (default: the
    ``FLORENCE_UI_MAX_PIXELS`` limit) is checked from the header, before any
    pixel is decoded, so a decompression bomb costs nothing; Pillow's own bomb
    limit stays in force above it. ``name`` is what the messages call a file
    (default: its quoted file name, or "the uploaded file" for bytes); the batch
    runner, which reads files itself, says "the file".
    """
    if source is None:
        raise ImageLoadError("No image: upload, paste or pick an example first.")
    max_pixels = max_pixels or limits.current().max_pixels
    if isinstance(source, np.ndarray):
        if source.size // max(1, source.shape[-1] if source.ndim == 3 else 1) > max_pixels:
            raise ImageLoadError(f"An array of shape {source.shape} has more than the {max_pixels:,} pixels allowed.")
        try:
            array = source if source.dtype == np.uint8 else np.clip(source, 0, 255).astype(np.uint8)
            return to_rgb(Image.fromarray(array))
        except (TypeError, ValueError) as exc:
            raise ImageLoadError(f"An array of shape {source.shape} is not an image ({exc}).") from exc
    if isinstance(source, Image.Image):
        image = source
        _check_size(image, "The image", max_pixels)
    else:
        name = name or _describe(source)
        if isinstance(source, str | Path) and not Path(source).is_file():
            raise ImageLoadError(f"The image file {name} does not exist.")
        empty = len(source) == 0 if isinstance(source, bytes | bytearray) else Path(source).stat().st_size == 0
        if empty:
            raise ImageLoadError(f"{name} is empty (0 bytes): upload the image again.")
        stream = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
        try:
            with warnings.catch_warnings():
                # our own cap (checked below from the header, before decoding) governs; Pillow's hard
                # refusal at twice its MAX_IMAGE_PIXELS stays as the absolute bound
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(stream)
                _check_size(image, name, max_pixels)
                image.load()
        except ImageLoadError:
            raise
        except UnidentifiedImageError as exc:
            raise ImageLoadError(f"{name} is not an image this app can read; use {SUPPORTED}.") from exc
        except Image.DecompressionBombError as exc:
            raise ImageLoadError(
                f"{name} is too large to open safely (a possible decompression bomb); resize it first ({exc})."
            ) from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageLoadError(f"{name} looks damaged or truncated and cannot be decoded ({exc}).") from exc
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose the picture
        pass
    return to_rgb(image)


def rotate_quarter_turns(image: Image.Image, turns: int) -> Image.Image:
    """Turn clockwise by ``turns`` × 90° (the image annotator's rotate buttons)."""
    turns %= 4
    if turns == 0:
        return image
    method = {1: Image.Transpose.ROTATE_270, 2: Image.Transpose.ROTATE_180, 3: Image.Transpose.ROTATE_90}[turns]
    return image.transpose(method)


def canonical_bytes(image: Image.Image) -> bytes:
    """A canonical lossless encoding of the pixels: binary PPM (``P6``) of the RGB image.

    PPM is a header and the raw bytes, so the same pixels give the same bytes
    on every machine and Pillow / zlib version (a PNG's compressed stream may
    not); it is only hashed, never stored.
    """
    rgb = image if image.mode == "RGB" else to_rgb(image)
    return _ppm_header(rgb) + rgb.tobytes()


def _ppm_header(image: Image.Image) -> bytes:
    return f"P6\n{image.width} {image.height}\n255\n".encode()


def image_identity(source: str | Path | bytes | Image.Image | np.ndarray) -> str:
    """The identity of an image, the same in the page, the CLI and every exporter (a sha256 hex digest).

    * a file (a path, or its bytes as read or as uploaded): sha256 of the file's
      bytes, exactly what ``sha256sum`` prints; EXIF orientation is part of
      those bytes, so nothing is decoded;
    * an image with no file (a pasted canvas, an API call with an array, a
      picture turned in the annotator): sha256 of :func:`canonical_bytes`.

    A photo turned with the annotator's rotate buttons is a different image
    for this rule: its pixels (and the regions drawn on them) are in the turned
    frame, and the turned pixels are what Label Studio receives.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        return hashlib.sha256(source).hexdigest()
    if isinstance(source, str | Path):
        digest = hashlib.sha256()
        with open(source, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    if isinstance(source, np.ndarray):
        source = open_image(source)
    rgb = source if source.mode == "RGB" else to_rgb(source)
    digest = hashlib.sha256(_ppm_header(rgb))  # = sha256(canonical_bytes(rgb)), without joining a second copy
    digest.update(rgb.tobytes())
    return digest.hexdigest()
