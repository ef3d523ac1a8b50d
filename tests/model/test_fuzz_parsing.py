"""Property tests of the output → detections path: any answer text parses, or fails with a documented error.

``FlorenceEngine.parse`` reads text that did not necessarily come from the
model (a hand-edited JSONL line, another runtime's output, a paste), so it must
survive anything: random ``<loc_N>`` runs of odd lengths, bins past the
vocabulary (``<loc_1000>``, a 5000-digit bin), special and task tokens in the
middle of labels, unicode / RTL / zero-width text, answers cut off at any
character, thousands of regions, images from 1×1 to 10000×10000. A valid
request never raises; what comes back is always consistent (ordered finite
boxes inside the image, one entry per row in every data array, masks of the
image's shape). Only a bad *request* raises, and only :class:`InputError` or
:class:`BoxError` (both ``ValueError`` subclasses, documented in the README).

Runs are derandomised (a fixed seed per test) so CI sees the same examples
every time; each bug these tests found is pinned as an explicit ``@example``.
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
import warnings

import numpy as np
import pytest
import supervision as sv
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from florence_ui.core.geometry import NUM_BINS, BoxError, canonical_locs, validate_box
from florence_ui.core.labels import regions_from_result
from florence_ui.core.result import FlorenceResult
from florence_ui.core.tasks import TASK_TOKENS, TASKS, InputKind, OutputKind, get_task
from florence_ui.model.engine import InputError
from florence_ui.model.parsing import ClassRegistry, clean_text, text_input_box
from florence_ui.model.scoring import text_pieces

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: tasks whose rows carry masks: their images are kept to a few megapixels (a mask is width × height bytes a row)
MASK_TASKS = ("<REFERRING_EXPRESSION_SEGMENTATION>", "<REGION_TO_SEGMENTATION>", "<OPEN_VOCABULARY_DETECTION>")
MAX_MASK_PIXELS = 4_000_000
#: tasks answering ``label<4 locs>…`` (``<OCR_WITH_REGION>``: 8 locs), whose truncations parse to a prefix
BOX_TASKS = ("<OD>", "<DENSE_REGION_CAPTION>", "<REGION_PROPOSAL>", "<CAPTION_TO_PHRASE_GROUNDING>",
             "<OPEN_VOCABULARY_DETECTION>", "<OCR_WITH_REGION>")  # fmt: skip
REGION_TASKS = tuple(t.token for t in TASKS if t.input is InputKind.BOXES)
SPECIAL_RE = re.compile(r"<loc_\d+>|</?s>|<pad>")


@pytest.fixture(scope="module")
def parser(engine):
    """The session's tiny engine with a registry of its own: fuzzed class names stay out of other tests' ids."""
    fuzz_engine = copy.copy(engine)
    fuzz_engine.classes = ClassRegistry()
    return fuzz_engine


def _golden_vectors() -> list[dict]:
    from golden_data import GOLDEN_PATH, load_golden

    return load_golden()["vectors"] if GOLDEN_PATH.exists() else []


GOLDEN = _golden_vectors()

# ---- strategies ---------------------------------------------------------------------------
VALID_LOC = st.integers(0, NUM_BINS - 1).map(lambda n: f"<loc_{n}>")
ODD_LOC = st.one_of(
    st.integers(NUM_BINS, 10**40).map(lambda n: f"<loc_{n}>"),
    st.sampled_from(
        [
            "<loc_1000>",
            "<loc_99999>",
            "<loc_" + "9" * 5000 + ">",
            "<loc_0005>",
            "<loc_٥>",
            "<loc_>",
            "<loc_-5>",
            "<loc_5",
            "loc_5>",
            "<loc_ 5>",
            "<LOC_5>",
        ]
    ),  # fmt: skip
)
SPECIALS = ["<s>", "</s>", "<pad>", "<unk>", "<poly>", "</poly>", "<sep>", "<od>", "</od>", "<obj>", "<ground>",
            "<and>", "<box>", "</box>", "<bbox>", "<image>", "<", ">", "<>", *TASK_TOKENS]  # fmt: skip
ODD_TEXT = ["", " ", "car", "a green car", "the image", "שלום עולם", "مرحبا", "\u202egnp.exe", "\u200b", "\u200d",
            "\ufeff", "👨‍👩‍👧", "e\u0301", "中文", "\x00", "\ud800", "\n", "\t", "No object detected.",
            "x" * 300]  # fmt: skip
TEXT = st.one_of(st.sampled_from(ODD_TEXT), st.text(max_size=12))
PIECE = st.one_of(VALID_LOC, VALID_LOC, VALID_LOC, ODD_LOC, st.sampled_from(SPECIALS), TEXT)
#: anything: a soup of loc tokens, specials, task tokens and text
ANSWER = st.lists(PIECE, max_size=48).map("".join)


@st.composite
def instance(draw) -> str:
    """One region as Florence-2 writes it, give or take: an optional label, 1–9 locs per box, maybe a polygon."""
    label = draw(st.one_of(st.just(""), TEXT))
    runs = draw(st.lists(st.integers(1, 9), min_size=1, max_size=3))
    parts = ["".join(draw(st.lists(st.one_of(VALID_LOC, VALID_LOC, ODD_LOC), min_size=n, max_size=n))) for n in runs]
    body = "<sep>".join(parts) if draw(st.booleans()) else "".join(parts)
    return label + (f"<poly>{body}</poly>" if draw(st.booleans()) else body)


#: answers shaped like the model's (prefix, instances, end and padding) with odd loc counts and missing labels
STRUCTURED = st.builds(
    lambda head, body, tail: head + "".join(body) + tail,
    st.sampled_from(["", "</s><s>", "</s><s><s><s>"]),
    st.lists(instance(), max_size=12),
    st.sampled_from(["", "</s>", "</s><pad><pad>"]),
)


def size_for(task: str) -> st.SearchStrategy[tuple[int, int]]:
    """Image sizes from 1×1 to 10000×10000 (mask tasks: at most :data:`MAX_MASK_PIXELS`)."""
    if task not in MASK_TASKS:
        return st.tuples(st.integers(1, 10_000), st.integers(1, 10_000))
    return st.integers(1, 10_000).flatmap(
        lambda w: st.tuples(st.just(w), st.integers(1, max(1, min(10_000, MAX_MASK_PIXELS // w))))
    )


def task_and_size(tasks) -> st.SearchStrategy[tuple[str, tuple[int, int]]]:
    return st.sampled_from(tasks).flatmap(lambda t: st.tuples(st.just(t), size_for(t)))


ALL_TASKS = TASK_TOKENS
TEXT_INPUT = st.one_of(st.none(), TEXT, ANSWER)


# ---- the invariants ------------------------------------------------------------------------
def parse_strictly(parser, *args, **kwargs) -> FlorenceResult:
    """``parser.parse`` with numpy's numeric warnings (NaN means, overflow casts) turned into failures."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        return parser.parse(*args, **kwargs)


def assert_consistent(result: FlorenceResult, task: str, size: tuple[int, int]) -> None:
    """What every parse result promises, whatever the answer said."""
    spec = get_task(task)
    width, height = size
    det = result.detections
    n = len(det)
    assert isinstance(result, FlorenceResult) and result.task == spec.token
    assert result.image_size == (width, height)
    xyxy = np.asarray(det.xyxy, dtype=np.float64)
    assert xyxy.shape == (n, 4)
    assert np.isfinite(xyxy).all(), xyxy
    assert (xyxy[:, 0] <= xyxy[:, 2]).all() and (xyxy[:, 1] <= xyxy[:, 3]).all(), xyxy
    assert (xyxy >= 0).all() and (xyxy[:, 0::2] <= width).all() and (xyxy[:, 1::2] <= height).all(), (xyxy, size)
    for key, values in det.data.items():
        assert len(values) == n, key
    assert det.class_id is not None and det.class_id.shape == (n,) and np.issubdtype(det.class_id.dtype, np.integer)
    assert det.confidence is not None and det.confidence.shape == (n,)
    if det.mask is not None:
        assert det.mask.shape == (n, height, width) and det.mask.dtype == bool
    # (an empty merge of region-task parts carries no data keys: sv.Detections.merge drops them)
    names = [str(name) for name in det.data.get("class_name", [])]
    assert len(names) == n and all(isinstance(name, str) for name in det.data.get("class_name", []))
    if spec.output is not OutputKind.POLYGONS:  # segmentation rows are named by the user's text, not the answer
        assert not any(SPECIAL_RE.search(name) for name in names), names
    # same name ↔ same class id (annotator colours, exports)
    pairs = set(zip(names, (int(c) for c in det.class_id), strict=True))
    assert len(pairs) == len({name for name, _ in pairs}) == len({cid for _, cid in pairs}), pairs
    for bins in det.data.get("loc_bins", []):
        assert all(isinstance(b, int) and 0 <= b < NUM_BINS for b in bins), bins
    for parts in det.data.get("polygons", []):
        for part in parts:
            points = np.asarray(part, dtype=np.float64)
            assert points.ndim == 2 and points.shape[1] == 2 and len(points) >= 3
            assert (points >= 0).all() and (points[:, 0] <= width).all() and (points[:, 1] <= height).all()
    if sv.config.ORIENTED_BOX_COORDINATES in det.data:
        quads = np.asarray(det.data[sv.config.ORIENTED_BOX_COORDINATES], dtype=np.float64).reshape(n, 4, 2)
        assert (quads >= 0).all() and (quads[..., 0] <= width).all() and (quads[..., 1] <= height).all()
    if spec.output is OutputKind.TEXT:
        assert n == 0 and isinstance(result.text, str) and not SPECIAL_RE.search(result.text)
    else:
        assert result.text is None
    # everything downstream of a result reads it without failing: JSON, regions for review and export
    json.dumps(result.to_dict(), allow_nan=False)
    regions = regions_from_result(result)
    assert len(regions) == n and all(r.source_task == spec.token for r in regions)


# ---- any answer --------------------------------------------------------------------------------
def case(task: str, size: tuple[int, int], answer: str, text: str | None = None):
    """An explicit example (a regression) for :func:`test_any_answer_parses_to_consistent_detections`."""
    return example(task_size=(task, size), answer=answer, text=text)


@settings(FUZZ, max_examples=250)
@given(task_size=task_and_size(ALL_TASKS), answer=st.one_of(ANSWER, STRUCTURED), text=TEXT_INPUT)
# bins past the vocabulary overflowed torch's int64 in the processor's dequantiser (ValueError: Overflow ...)
@case("<OD>", (1, 10000), "<loc_999><loc_1000000000000000000000000000000><s><loc_999><loc_0><loc_956>")
@case("<OCR_WITH_REGION>", (640, 7), "t<loc_1000000000000000000000000000000>" + "<loc_1>" * 7)
@case("<REFERRING_EXPRESSION_SEGMENTATION>", (100, 1), "<loc_607><loc_99999><loc_10000000000000000000000><loc_5>", "a")
# ... and past 4300 digits overflowed int() itself (ValueError: Exceeds the limit (4300 digits))
@case("<OD>", (640, 480), "car<loc_" + "9" * 5000 + "><loc_1><loc_2><loc_3>")
@case("<REGION_TO_CATEGORY>", (640, 480), "car", "<loc_" + "9" * 5000 + "><loc_1><loc_2><loc_3>")
# bins 1000..99999 gave boxes far outside the image
@case("<OD>", (640, 2), "<loc_444282>><loc_0><loc_444410><loc_1000><loc_137><loc_764>")
@case("<DENSE_REGION_CAPTION>", (64, 10000), "\u200b<loc_343007><loc_610327><loc_133997><loc_0><<<loc_1000>")
# reversed corners came out as boxes with x1 > x2 in region tasks (the answer's echoed box, the text's prompt box)
@case("<REGION_TO_DESCRIPTION>", (2, 3), "<obj><pad><loc_999><loc_43><loc_1000><loc_3>")
@case("<REGION_TO_CATEGORY>", (640, 480), "car", "<loc_900><loc_0><loc_100><loc_999>")
@case("<OD>", (640, 480), "car<loc_900><loc_900><loc_100><loc_100>")  # (supervision already ordered these)
# clean_text made "<s>" / "<loc_2>" out of "<s</s>>" / "<loc_<loc_1>2>" and left them in the caption
@case("<CAPTION>", (640, 480), "<s</s>>a cat<loc_<loc_1>2></s>")
# extremes: 1×1 and 10000×10000 images, empty answers, a bare end token
@case("<REFERRING_EXPRESSION_SEGMENTATION>", (10_000, 10_000), "<loc_1><loc_1><loc_998><loc_1><loc_500><loc_998>", "x")
@case("<REGION_TO_SEGMENTATION>", (1, 1), "<loc_0><loc_0><loc_999><loc_0><loc_999><loc_999>")
@case("<OCR_WITH_REGION>", (1, 1), "")
@case("<CAPTION_TO_PHRASE_GROUNDING>", (10_000, 10_000), "</s>", "")
def test_any_answer_parses_to_consistent_detections(parser, task_size, answer, text):
    """A valid request never raises, whatever the answer text: only its rows differ."""
    task, size = task_size
    result = parse_strictly(parser, task, answer, size, text=text)
    assert_consistent(result, task, size)
    if get_task(task).needs_boxes:
        # a region task without boxes answers the box its text names (one row), else whatever the answer echoes
        box = text_input_box(text, size)
        if box is not None:
            assert len(result.detections) == 1
            assert np.allclose(result.detections.data["prompt_box"][0], box, atol=1e-2)


@settings(FUZZ, max_examples=60)
@given(
    task_size=task_and_size(REGION_TASKS),
    answers=st.lists(st.one_of(ANSWER, STRUCTURED), min_size=1, max_size=5),
    data=st.data(),
)
def test_region_tasks_with_boxes_answer_each_box_in_order(parser, task_size, answers, data):
    """With N boxes and N answers, row i answers box i: its prompt box, and for text tasks its own answer."""
    task, size = task_size
    width, height = size
    # one corner in [0, size - 0.5], the other in [0.5, size], either first: never entirely outside the image
    near = st.tuples(st.floats(0, width - 0.5), st.floats(0, height - 0.5))
    far = st.tuples(st.floats(0.5, width), st.floats(0.5, height))
    box = st.tuples(near, far, st.booleans()).map(lambda t: [*t[1], *t[0]] if t[2] else [*t[0], *t[1]])
    boxes = [data.draw(box) for _ in answers]
    result = parse_strictly(parser, task, answers, size, boxes=boxes)
    assert_consistent(result, task, size)
    det = result.detections
    fixed = [validate_box(b, size).box for b in boxes]
    assert len(det) == len(boxes)
    assert np.allclose(det.data["prompt_box"], fixed, atol=1e-2)
    assert result.raw == answers
    if get_task(task).output is OutputKind.REGION_TEXT:
        assert np.allclose(det.xyxy, fixed, atol=1e-2)
        # numpy's fixed-width str arrays drop trailing NULs (their padding): "\x00" is stored as ""
        assert list(det.data["class_name"]) == [clean_text(canonical_locs(a)).rstrip("\x00") for a in answers]
    else:
        assert det.mask is None and result.masks().shape == (len(boxes), height, width)


def test_merging_unscored_rows_of_one_box_warns_nothing(parser):
    """Two polygons answering one box merge into one row; their all-NaN confidences warned "Mean of empty slice"."""
    answer = "<loc_1><loc_1><loc_500><loc_1><loc_500><loc_500>x<loc_600><loc_600><loc_900><loc_600><loc_900><loc_900>"
    result = parse_strictly(parser, "<REGION_TO_SEGMENTATION>", [answer], (64, 48), boxes=[[0, 0, 64, 48]])
    assert_consistent(result, "<REGION_TO_SEGMENTATION>", (64, 48))
    assert len(result.detections) == 1 and len(result.detections.data["polygons"][0]) == 2
    assert math.isnan(result.detections.confidence[0])


# ---- well-formed answers parse exactly -------------------------------------------------------
LABEL = st.text("abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789-',", min_size=1, max_size=16).filter(
    lambda s: s.strip() and s.strip() != "the image"
)


@st.composite
def well_formed(draw, task: str, max_regions: int = 25) -> tuple[str, list[str], list[list[int]]]:
    """A clean answer for ``task``, with the labels and bins each row must come back with."""
    group = 8 if task == "<OCR_WITH_REGION>" else 4
    per_label = st.just(1) if task in ("<OCR_WITH_REGION>", "<REGION_PROPOSAL>") else st.integers(1, 3)
    text, labels, bins = "</s><s>", [], []
    for _ in range(draw(st.integers(0, max_regions))):
        label = "" if task == "<REGION_PROPOSAL>" else draw(LABEL)
        text += label
        for _ in range(draw(per_label)):
            box = draw(st.lists(st.integers(0, NUM_BINS - 1), min_size=group, max_size=group))
            text += "".join(f"<loc_{b}>" for b in box)
            labels.append(label.strip())
            bins.append(box)
    return text + "</s>", labels, bins


def reference_xyxy(bins: list[int], size: tuple[int, int]) -> np.ndarray:
    """The reference dequantisation (bin centre), corners ordered: what a row's box must be within 1 px of."""
    width, height = size
    scale = np.array([width, height] * (len(bins) // 2), dtype=np.float64) / NUM_BINS
    points = ((np.asarray(bins, dtype=np.float64) + 0.5) * scale).reshape(-1, 2)
    return np.concatenate([points.min(0), points.max(0)])


@settings(FUZZ, max_examples=80)
@given(task_size=task_and_size(BOX_TASKS), data=st.data())
def test_well_formed_answers_parse_exactly(parser, task_size, data):
    """Every region of a clean answer comes back, in order, with its label, its bins, and its box within 1 px."""
    task, size = task_size
    answer, labels, bins = data.draw(well_formed(task))
    text = "a thing" if get_task(task).needs_text else None
    det = parse_strictly(parser, task, answer, size, text=text).detections
    assert len(det) == len(labels)
    assert list(det.data["class_name"]) == labels
    assert [list(b) for b in det.data["loc_bins"]] == bins
    for row, row_bins in zip(det.xyxy, bins, strict=True):
        assert np.abs(row - reference_xyxy(row_bins, size)).max() <= 1.0


@settings(FUZZ, max_examples=4)
@given(task=st.sampled_from(("<OD>", "<REGION_PROPOSAL>", "<OCR_WITH_REGION>")), n=st.integers(1000, 2500),
       seed=st.integers(0, 2**32 - 1), size=st.tuples(st.integers(1, 10_000), st.integers(1, 10_000)))  # fmt: skip
def test_thousands_of_regions(parser, task, n, seed, size):
    """Far more regions than the model can write (1024 tokens ≈ 200 boxes) still parse, one row each."""
    rng = random.Random(seed)
    group = 8 if task == "<OCR_WITH_REGION>" else 4
    bins = [[rng.randrange(NUM_BINS) for _ in range(group)] for _ in range(n)]
    labels = ["" if task == "<REGION_PROPOSAL>" else f"thing {i % 97}" for i in range(n)]
    answer = "</s><s>" + "".join(lab + "".join(f"<loc_{b}>" for b in bs) for lab, bs in zip(labels, bins, strict=True))
    result = parse_strictly(parser, task, answer, size)
    assert_consistent(result, task, size)
    det = result.detections
    assert len(det) == n and list(det.data["class_name"]) == labels
    assert [list(b) for b in det.data["loc_bins"]] == bins


# ---- truncated answers ---------------------------------------------------------------------------
@st.composite
def truncated_golden(draw) -> tuple[dict, str]:
    """A real Florence-2 answer cut at a random character, or at a random token boundary."""
    vec = draw(st.sampled_from(GOLDEN))
    full = vec["generated_text"]
    if draw(st.booleans()):
        return vec, full[: draw(st.integers(0, len(full)))]
    pieces = [p for p, _ in text_pieces(full)]
    return vec, "".join(pieces[: draw(st.integers(0, len(pieces)))])


@pytest.mark.skipif(not GOLDEN, reason="golden outputs not found (../shared must sit beside the repo)")
@settings(FUZZ, max_examples=120)
@given(case=truncated_golden())
def test_truncated_answers_parse_to_a_prefix(parser, case):
    """An answer cut at max_new_tokens (or anywhere) parses; box tasks give the first rows of the whole answer."""
    vec, cut = case
    task, size, text = vec["task"], tuple(vec["image_size"]), vec["text_input"]
    part = parse_strictly(parser, task, cut, size, text=text)
    assert_consistent(part, task, size)
    if task in BOX_TASKS:
        whole = parse_strictly(parser, task, vec["generated_text"], size, text=text).detections
        k = len(part.detections)
        assert k <= len(whole)
        assert list(part.detections.data["class_name"]) == list(whole.data["class_name"][:k])
        assert np.array_equal(part.detections.xyxy, whole.xyxy[:k])


# ---- out-of-vocabulary bins --------------------------------------------------------------------------
@pytest.mark.parametrize("digits", ["1000", "99999", "9" * 40, "9" * 5000, "0999"])
def test_bins_past_the_vocabulary_read_as_the_last_bin(parser, digits):
    """``<loc_N>`` past ``<loc_999>`` is not a Florence-2 token: it parses as ``<loc_999>``, not as a crash."""
    odd = parse_strictly(parser, "<OD>", f"car<loc_1><loc_2><loc_{digits}><loc_{digits}>", (640, 480)).detections
    last = parse_strictly(parser, "<OD>", "car<loc_1><loc_2><loc_999><loc_999>", (640, 480)).detections
    assert np.array_equal(odd.xyxy, last.xyxy) and list(odd.data["loc_bins"]) == [[1, 2, 999, 999]]


# ---- bad requests: only the documented errors ------------------------------------------------------------
ODD_NUMBER = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**6), 10**6))
ODD_BOX = st.one_of(
    st.lists(ODD_NUMBER, min_size=0, max_size=6),
    st.tuples(st.floats(-50, 5000), st.floats(-50, 5000), st.floats(-50, 5000), st.floats(-50, 5000)).map(list),
    st.none(),
    st.text(max_size=4),
)


def usable(box, size: tuple[int, int]) -> bool:
    """The documented contract of a prompt box: 4 finite numbers, not entirely outside the image."""
    if isinstance(box, str | bytes) or box is None or len(box) != 4:
        return False
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in box):
        return False
    x1, x2 = sorted(box[0::2])
    y1, y2 = sorted(box[1::2])
    return x2 > 0 and y2 > 0 and x1 < size[0] and y1 < size[1]


@settings(FUZZ, max_examples=100)
@given(
    task=st.sampled_from(REGION_TASKS),
    boxes=st.lists(ODD_BOX, min_size=1, max_size=4),
    extra_answers=st.integers(-1, 1),
    size=st.tuples(st.integers(1, 2000), st.integers(1, 2000)),
)
def test_bad_boxes_raise_only_documented_errors(parser, task, boxes, extra_answers, size):
    """Wrong box counts raise InputError; unusable boxes raise BoxError (an InputError once engine wraps it)."""
    answers = ["car<loc_1><loc_2><loc_3><loc_4>"] * max(0, len(boxes) + extra_answers)
    try:
        result = parse_strictly(parser, task, answers, size, boxes=boxes)
    except InputError:
        assert extra_answers != 0 or not all(usable(b, size) for b in boxes)
        return
    except BoxError:
        assert extra_answers == 0 and not all(usable(b, size) for b in boxes)
        return
    assert extra_answers == 0 and all(usable(b, size) for b in boxes)
    assert_consistent(result, task, size)
    assert len(result.detections) == len(boxes)


# Requests engine.parse must refuse with InputError, not an untyped IndexError / TypeError or a nonsense result.
@pytest.mark.parametrize(
    "task, answer",
    [
        ("<OD>", []),
        ("<CAPTION>", []),
        ("<REGION_TO_CATEGORY>", []),
        ("<OD>", None),
        ("<OD>", 5),
        ("<OD>", ["a", 1]),
        ("<OD>", ["car<loc_1><loc_2><loc_3><loc_4>", "car<loc_1><loc_2><loc_3><loc_4>"]),
    ],  # fmt: skip
)
def test_answers_that_are_not_one_string_per_box_raise_input_error(parser, task, answer):
    with pytest.raises(InputError):
        parser.parse(task, answer, (64, 48))


@pytest.mark.parametrize("size", [(0, 10), (10, 0), (-5, 10), (float("nan"), 10), (10,), (10, 10, 3), "64x48", None])
def test_image_sizes_that_are_not_two_positive_integers_raise_input_error(parser, size):
    with pytest.raises(InputError):
        parser.parse("<OD>", "car<loc_1><loc_2><loc_3><loc_4>", size)
