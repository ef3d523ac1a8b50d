"""Property tests of the coordinate conversions: pixels ↔ bins ↔ pixels, prompt boxes, Label Studio percent.

What each conversion guarantees, stated where it is tested:

* pixel → bin (the processor's quantiser, ``engine.quantize_box``) → pixel lands within one bin
  (``size / 1000`` per axis) of the original with the reference dequantisation (bin centre), and within
  one bin + 1 px with the processor's own, which truncates to whole pixels; any finite box, even far
  outside the image, quantises to bins of the vocabulary (0..999);
* ``validate_box`` returns an ordered box of at least 1×1 px inside the image that covers the part of
  the given box inside it, or raises ``BoxError``: exactly when the box is not 4 finite numbers or lies
  entirely outside the image;
* Label Studio percentages (6 decimals) give pixels back within ``size × 1e-8`` per coordinate, and
  geometry outside the image is clipped to its edge.

Derandomised, like ``test_fuzz_parsing``; each bug found is pinned as an explicit ``@example``.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from label_studio_sdk.label_interface import LabelInterface

from florence_ui.core.geometry import (
    MAX_BIN,
    NUM_BINS,
    BoxError,
    bins_to_xyxy,
    canonical_locs,
    clamp_bin,
    loc_tokens,
    parse_loc_bins,
    validate_box,
)
from florence_ui.core.labels import LabeledImage, Region, region_mask
from florence_ui.labelstudio.convert import generate_label_config, label_of, region_geometry, to_prediction
from florence_ui.model.parsing import text_input_box
from florence_ui.model.scoring import sequence_bins, text_pieces, walk_instances

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SIZE = st.tuples(st.integers(1, 10_000), st.integers(1, 10_000))
#: Label Studio keeps 6 decimals of a percent: 5e-7 % of the size, twice for a far corner, plus float error
LS_TOL = 1e-8


@st.composite
def box_in(draw, size: tuple[int, int]) -> list[float]:
    """Any box with its corners on or inside the image, corners in any order."""
    width, height = size
    return [draw(st.floats(0, lim)) for lim in (width, height, width, height)]


@st.composite
def usable_box_in(draw, size: tuple[int, int]) -> list[float]:
    """A box validate_box accepts: one corner in [0, size - 0.5], the other in [0.5, size], either first."""
    width, height = size
    near = [draw(st.floats(0, width - 0.5)), draw(st.floats(0, height - 0.5))]
    far = [draw(st.floats(0.5, width)), draw(st.floats(0.5, height))]
    return far + near if draw(st.booleans()) else near + far


@pytest.fixture(scope="module")
def quantiser(engine):
    return engine


# ---- pixels → bins → pixels -----------------------------------------------------------------------
@settings(FUZZ, max_examples=300)
@given(size=SIZE, data=st.data())
@example(size=(1, 1), data=None).via("a 1×1 image: every coordinate in one pixel")
@example(size=(10_000, 10_000), data=None).via("the right and bottom edges fall in the last bin")
def test_pixels_to_bins_to_pixels_land_within_one_bin(quantiser, size, data):
    width, height = size
    box = data.draw(box_in(size)) if data is not None else [float(width), float(height), 0.0, 0.0]
    bins = quantiser.quantize_box(box, size)
    assert len(bins) == 4 and all(isinstance(b, int) and 0 <= b <= MAX_BIN for b in bins)
    per_bin = np.array([width, height, width, height], dtype=np.float64) / NUM_BINS
    reference = np.array(bins_to_xyxy(bins, size))
    # float32 tensors may put a coordinate on a bin edge into the neighbour bin: still within one bin
    assert (np.abs(reference - box) <= per_bin * (1 + 1e-6)).all(), (box, bins, reference)
    processor = quantiser.processor.post_processor.dequantize(torch.tensor([bins]), size=size)[0].numpy()
    assert (np.abs(processor - box) <= per_bin * (1 + 1e-6) + 1).all(), (box, bins, processor)


@settings(FUZZ, max_examples=200)
@given(size=SIZE, box=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=4, max_size=4))
@example(size=(640, 480), box=[-1e308, 1e308, 1e308, -1e308])
def test_any_finite_box_quantises_into_the_vocabulary(quantiser, size, box):
    """Boxes outside the image, or beyond float32, still give bins ``<loc_0>`` … ``<loc_999>``."""
    assert all(0 <= b <= MAX_BIN for b in quantiser.quantize_box(box, size))


@settings(FUZZ, max_examples=200)
@given(size=SIZE, data=st.data())
def test_a_prompt_box_comes_back_from_its_loc_tokens_within_one_bin(quantiser, size, data):
    """validate → quantise → ``<loc_N>`` prompt → the box parse() reads from a region prompt."""
    box = validate_box(data.draw(usable_box_in(size)), size).box
    back = text_input_box(loc_tokens(quantiser.quantize_box(box, size)), size)
    width, height = size
    per_bin = np.array([width, height, width, height], dtype=np.float64) / NUM_BINS
    assert back is not None and (np.abs(np.array(back) - box) <= per_bin * (1 + 1e-6)).all(), (box, back)


# ---- prompt-box validation --------------------------------------------------------------------------
NUMBER = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-100, 11_000),
    st.integers(-(10**30), 10**30),
    st.sampled_from([0, 1, -0.0, 0.5, 1e-300]),
)
ANY_BOX = st.one_of(
    st.lists(NUMBER, min_size=4, max_size=4),
    st.lists(NUMBER, max_size=6),
    st.tuples(NUMBER, NUMBER, NUMBER, NUMBER),
    st.text(max_size=5),
    st.none(),
    st.lists(st.one_of(st.none(), st.text(max_size=3)), min_size=4, max_size=4),
)


def _usable(box, size: tuple[int, int]) -> bool:
    """The documented contract: 4 finite numbers, not entirely outside the image."""
    if isinstance(box, str | bytes) or box is None or len(box) != 4:
        return False
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in box):
        return False
    x1, x2 = sorted(float(v) for v in box[0::2])
    y1, y2 = sorted(float(v) for v in box[1::2])
    return x2 > 0 and y2 > 0 and x1 < size[0] and y1 < size[1]


@settings(FUZZ, max_examples=400)
@given(box=ANY_BOX, size=SIZE)
# an infinite corner was accepted and silently became the image edge
@example(box=[math.inf, 0, 1, 1], size=(10, 10))
@example(box=[0, 0, math.inf, 5], size=(10, 10))
# a string of 4 digits iterated as 4 numbers
@example(box="1234", size=(10, 10))
# a zero-area click, a reversed box, a box past every edge
@example(box=[5, 5, 5, 5], size=(10, 10))
@example(box=[9, 9, 1, 1], size=(10, 10))
@example(box=[-1e308, -1e308, 1e308, 1e308], size=(1, 1))
@example(box=[0.0, 1.0, 1.0, 0.05], size=(1, 2))  # grown by 1 px: the start corner must not move by a rounding error
def test_validate_box_fixes_or_refuses(box, size):
    width, height = size
    try:
        fix = validate_box(box, size)
    except BoxError:
        assert not _usable(box, size)
        return
    assert _usable(box, size)
    x1, y1, x2, y2 = fix.box
    assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    assert x2 - x1 >= 1 - 1e-9 and y2 - y1 >= 1 - 1e-9
    # it covers the part of the given box inside the image
    gx1, gx2 = sorted(float(v) for v in box[0::2])
    gy1, gy2 = sorted(float(v) for v in box[1::2])
    assert x1 <= max(gx1, 0) and y1 <= max(gy1, 0) and x2 >= min(gx2, width) and y2 >= min(gy2, height)
    assert ("corners swapped" in fix.notes) == (box[0] > box[2] or box[1] > box[3])
    # and it is its own fix: nothing more to do
    assert validate_box(fix.box, size) == type(fix)(fix.box, ())


@pytest.mark.parametrize("size", [(0, 10), (10, 0), (-3, 5), (math.nan, 5)])
def test_validate_box_refuses_an_image_without_pixels(size):
    with pytest.raises(BoxError):
        validate_box([0, 0, 1, 1], size)


# ---- <loc_N> tokens ---------------------------------------------------------------------------------------
LOC_SOUP = st.lists(
    st.one_of(
        st.integers(0, 10**6).map(lambda n: f"<loc_{n}>"),
        st.sampled_from(["<loc_>", "<loc_-1>", "<loc_5", "<loc_٣>", "<loc_0007>", "<", ">", "<s>", "</s>", "<sep>"]),
        st.text(max_size=6),
    ),
    max_size=30,
).map("".join)


@settings(FUZZ, max_examples=200)
@given(bins=st.lists(st.integers(0, MAX_BIN), max_size=20))
def test_loc_tokens_round_trip(bins):
    assert parse_loc_bins(loc_tokens(bins)) == bins


@settings(FUZZ, max_examples=200)
@given(digits=st.one_of(st.integers(0, 10**60).map(str), st.text("0123456789", min_size=1, max_size=60)))
@example(digits="9" * 5000)  # int() refuses strings past 4300 digits
@example(digits="0" * 5000 + "7")
def test_clamp_bin_is_the_value_capped_at_the_last_bin(digits):
    significant = digits.lstrip("0") or "0"
    value = int(significant) if len(significant) <= 4000 else None  # None: past int()'s limit, surely > 999
    assert clamp_bin(digits) == (MAX_BIN if value is None else min(value, MAX_BIN))


@settings(FUZZ, max_examples=200)
@given(text=LOC_SOUP)
def test_canonical_locs_keeps_every_bin_in_range_and_is_idempotent(text):
    canon = canonical_locs(text)
    assert canonical_locs(canon) == canon
    assert parse_loc_bins(canon) == parse_loc_bins(text)
    assert all(0 <= b <= MAX_BIN for b in parse_loc_bins(canon))


@settings(FUZZ, max_examples=200)
@given(text=LOC_SOUP, group=st.sampled_from([4, 8]))
def test_text_pieces_cover_the_text_and_find_the_same_bins(text, group):
    """parse() scores and bins come from these pieces: they must be the text, and find its bins."""
    pieces = text_pieces(text)
    assert "".join(p for p, _ in pieces) == text
    bins = sequence_bins(pieces)
    assert bins == parse_loc_bins(text)
    # each instance is ``group`` consecutive bins of the answer, in answer order
    flat = [b for inst in walk_instances(pieces, group) for b in inst.bins]
    it = iter(bins)
    assert all(any(b == c for c in it) for b in flat)
    assert all(len(inst.bins) == group for inst in walk_instances(pieces, group))


# ---- Label Studio percent ↔ pixels ------------------------------------------------------------------------
def _back(value: dict, size: tuple[int, int]) -> list[float]:
    """A rectangle ``value`` in percent → pixel corners (what an importer of the annotations does)."""
    width, height = size
    x, y = value["x"] * width / 100, value["y"] * height / 100
    return [x, y, x + value["width"] * width / 100, y + value["height"] * height / 100]


@settings(FUZZ, max_examples=300)
@given(size=SIZE, data=st.data())
def test_label_studio_rectangles_round_trip(size, data):
    width, height = size
    x1, y1, x2, y2 = data.draw(box_in(size))
    box = [min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)]
    (value,) = region_geometry(Region("car", tuple(box), "<OD>"), width, height)
    assert all(0 <= value[k] <= 100 for k in ("x", "y", "width", "height"))
    tol = np.array([width, height, width, height]) * LS_TOL
    assert (np.abs(np.array(_back(value, size)) - box) <= tol).all(), (box, value)


@settings(FUZZ, max_examples=200)
@given(size=SIZE, box=st.lists(st.floats(-20_000, 20_000), min_size=4, max_size=4))
# a box partly left of the image kept its full width from x = 0: it grew past its own right edge
@example(size=(100, 100), box=[-10, 0, 50, 50])
@example(size=(100, 100), box=[90, 90, 10, 10])
def test_label_studio_rectangles_outside_the_image_are_clipped_to_it(size, box):
    width, height = size
    (value,) = region_geometry(Region("car", tuple(box), "<OD>"), width, height)
    xs = sorted(min(max(v, 0), width) for v in box[0::2])
    ys = sorted(min(max(v, 0), height) for v in box[1::2])
    tol = np.array([width, height, width, height]) * LS_TOL
    assert (np.abs(np.array(_back(value, size)) - [xs[0], ys[0], xs[1], ys[1]]) <= tol).all(), (box, value)


@settings(FUZZ, max_examples=200)
@given(size=SIZE, data=st.data())
# an odd number of coordinates (a hand-edited file) raised ValueError in zip(strict=True)
@example(size=(100, 50), data=None).via("odd-length polygon")
def test_label_studio_polygons_round_trip(size, data):
    width, height = size
    if data is None:
        flat = [10.0, 10.0, 90.0, 10.0, 50.0, 40.0, 7.0]
    else:
        count = data.draw(st.integers(0, 40))
        flat = [data.draw(st.floats(-100, (width, height)[i % 2] + 100)) for i in range(count)]
    region = Region("a car", (0, 0, width, height), "<REFERRING_EXPRESSION_SEGMENTATION>", polygons=[flat])
    geometries = region_geometry(region, width, height)
    pairs = list(zip(flat[0::2], flat[1::2], strict=False))
    if len(pairs) < 3:
        assert geometries == []
        return
    (value,) = geometries
    assert value["closed"] is True and len(value["points"]) == len(pairs)
    for (px, py), (x, y) in zip(value["points"], pairs, strict=True):
        assert abs(px * width / 100 - min(max(x, 0), width)) <= width * LS_TOL
        assert abs(py * height / 100 - min(max(y, 0), height)) <= height * LS_TOL
    if width * height <= 10**6:  # the mask export reads the same polygon without failing on an odd coordinate
        assert region_mask(region, width, height).shape == (height, width)


LABEL = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["\x00car", "a\tb", "a\nb", "a  b", "\x0b", "\ud800", "\ufffe", "<b>&amp;", '"', "שלום", "\u200b"]),
)


@settings(FUZZ, max_examples=40)
@given(labels=st.lists(LABEL, min_size=1, max_size=4))
# a NUL in a label made the generated config unparsable XML (ExpatError)
@example(labels=["\x00car"])
# a tab came back from the XML attribute as a space: the new project lacked the label (MissingInProject)
@example(labels=["a\tb"])
def test_any_label_goes_into_a_valid_label_studio_prediction(labels):
    """The config we generate holds every label we send, whatever characters the model put in it."""
    regions = [Region(label, (1.0, 2.0, 30.0, 40.0), "<OD>") for label in labels]
    item = LabeledImage(64, 48, regions=regions)
    config = generate_label_config([item])
    ET.fromstring(config)  # well-formed XML
    conversion = to_prediction(item)
    assert conversion.regions_sent == len(labels) and not conversion.left_out
    assert LabelInterface(config).validate_prediction(conversion.prediction, return_errors=True) == []
    sent = [r["value"]["rectanglelabels"][0] for r in conversion.prediction["result"]]
    assert sent == [label_of(r) for r in regions] and all(s and s == s.strip() for s in sent)
