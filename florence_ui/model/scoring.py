"""Per-detection confidence from the generation's token probabilities.

Florence-2 has no detection head and so no score: a detection is just text,
``label<loc_a><loc_b><loc_c><loc_d>``. Its confidence here is the mean
probability the decoder gave to the tokens that make it up (the label's tokens
and its four ``<loc_N>`` tokens; eight for an OCR quad). A label followed by
several boxes (``wheel<4 locs><4 locs>``) shares its label tokens with each.

The walker reads a list of ``(piece, probability)``: from :meth:`run` the pieces
are the generated tokens with real probabilities, from :meth:`parse` they are
the pieces of the text with NaN probabilities, so both paths find the same
instances and the same ``<loc_N>`` bins (used by the teaching view).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from florence_ui.core.geometry import clamp_bin

_LOC = re.compile(r"^<loc_(\d+)>$")
_PIECES = re.compile(r"<loc_\d+>|</?s>|<pad>|<[a-z_/]+>|[^<]+|<")
SPECIAL_PIECES = frozenset({"<s>", "</s>", "<pad>", "<unk>"})


@dataclass(frozen=True)
class Instance:
    """One run of ``group`` loc tokens with the label tokens before it."""

    bins: tuple[int, ...]
    score: float


def text_pieces(text: str) -> list[tuple[str, float]]:
    """Split generated text into pieces (loc tokens, specials, text) without probabilities."""
    return [(p, math.nan) for p in _PIECES.findall(text)]


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else math.nan


def walk_instances(pieces: Iterable[tuple[str, float]], group: int) -> list[Instance]:
    """Group loc tokens into instances of ``group`` bins, each scored with its label."""
    instances: list[Instance] = []
    label: list[float] = []
    run: list[tuple[int, float]] = []

    def flush() -> None:
        for start in range(0, len(run) - group + 1, group):
            chunk = run[start : start + group]
            bins = tuple(b for b, _ in chunk)
            instances.append(Instance(bins, _mean(label + [p for _, p in chunk])))

    for piece, prob in pieces:
        if piece in SPECIAL_PIECES:
            continue
        match = _LOC.match(piece)
        if match:
            run.append((clamp_bin(match.group(1)), prob))
            continue
        if run:
            flush()
            run.clear()
            label = []
        label.append(prob)
    if run:
        flush()
    return instances


def sequence_score(pieces: Iterable[tuple[str, float]]) -> float:
    """Mean probability over all non-special tokens: the score of a whole answer."""
    return _mean([p for piece, p in pieces if piece not in SPECIAL_PIECES])


def sequence_bins(pieces: Iterable[tuple[str, float]]) -> list[int]:
    """Every ``<loc_N>`` bin of an answer, in order (polygons, region echoes)."""
    out = []
    for piece, _ in pieces:
        match = _LOC.match(piece)
        if match:
            out.append(clamp_bin(match.group(1)))
    return out


def align(
    boxes: Sequence[Sequence[float]],
    instances: Sequence[Instance],
    to_pixels: Callable[[tuple[int, ...]], Sequence[float]],
) -> list[Instance | None]:
    """Match parsed boxes (in answer order) to walker instances by their pixels.

    The processor's parser may drop an instance (an empty or banned phrase), so
    this walks forward and skips instances until the dequantised bins equal the
    parsed coordinates; a box with no match gets ``None`` (confidence NaN).
    """
    out: list[Instance | None] = []
    j = 0
    for box in boxes:
        found = None
        for k in range(j, len(instances)):
            pixels = to_pixels(instances[k].bins)
            if len(pixels) == len(box) and all(
                abs(float(a) - float(b)) < 1e-3 for a, b in zip(pixels, box, strict=False)
            ):
                found, j = instances[k], k + 1
                break
        out.append(found)
    return out
