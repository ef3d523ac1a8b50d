"""The teaching view: what went in, what came out, and how ``<loc_N>`` becomes pixels.

Florence-2 is a sequence-to-sequence model: a task token (plus text or
``<loc_N>`` box tokens) goes in next to the image's tokens, and plain text with
``<loc_N>`` tokens comes out; every position is one of 1000 bins per axis.
These pure helpers turn a ``FlorenceResult`` into the tables and pictures a
teacher shows: the exact prompts and token counts, the raw output with its
location tokens highlighted, a bins → pixels table per region, and a 1000-bin
grid over the image; and, from an :class:`~florence_ui.model.explain.Explanation`,
the model's own tokens coloured by probability, the input tokens, the model's
eye with its patch grid, an attention heatmap over the picture for one token
and the alternatives at its step. No gradio here; the UI only displays what
they return.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from florence_ui.core.fields import LOC_BINS
from florence_ui.core.geometry import NUM_BINS, bin_to_pixel, explain_bins, parse_loc_bins
from florence_ui.core.tasks import get_task
from florence_ui.render.annotate import font_for

#: categories of :func:`token_spans` (the colour map of the UI's highlighted text)
LOCATION, SPECIAL, TASK = "location", "special", "task"
TOKEN_COLORS = {LOCATION: "#f59e0b", SPECIAL: "#9ca3af", TASK: "#6366f1"}
BIN_HEADERS = ["region", "label", "token", "axis", "bin", "formula", "pixel"]
_TOKEN_RE = re.compile(r"(<loc_\d+>|</?s>|<pad>|<unk>|<[A-Z_]+>)")


def md_tokens(text: str) -> str:
    """Put ``<loc_N>``-like tokens in code spans so Markdown does not swallow them as HTML tags."""
    return re.sub(r"(<[A-Za-z_/][\w/]*>)", r"`\1`", text)


def token_spans(raw: str | Sequence[str]) -> list[tuple[str, str | None]]:
    """Split generated text into (piece, category) pairs for a highlighted display.

    ``<loc_N>`` pieces are ``location``, ``<s>``/``</s>``/``<pad>`` are
    ``special`` (runs of padding collapse into one ``<pad>×N``), task tokens are
    ``task``, and words are ``None``. Several answers (one per box) are joined
    with a visible separator.
    """
    texts = [raw] if isinstance(raw, str) else list(raw)
    spans: list[tuple[str, str | None]] = []
    for n, text in enumerate(texts):
        if len(texts) > 1:
            spans.append((f"{'' if n == 0 else chr(10)}[box #{n + 1}] ", None))
        pads = 0
        for piece in _TOKEN_RE.split(text):
            if not piece:
                continue
            if piece == "<pad>":
                pads += 1
                continue
            if pads:
                spans.append((f"<pad>×{pads}" if pads > 1 else "<pad>", SPECIAL))
                pads = 0
            if piece.startswith("<loc_"):
                spans.append((piece, LOCATION))
            elif piece in ("<s>", "</s>", "<unk>"):
                spans.append((piece, SPECIAL))
            elif re.fullmatch(r"<[A-Z_]+>", piece):
                spans.append((piece, TASK))
            else:
                spans.append((piece, None))
        if pads:
            spans.append((f"<pad>×{pads}" if pads > 1 else "<pad>", SPECIAL))
    return spans


def bin_rows(result: Any, max_rows: int = 2000) -> list[list[Any]]:
    """One row per ``<loc_N>`` of every region: region number, label, token, axis, bin, formula, pixel."""
    rows: list[list[Any]] = []
    for region in result.regions():
        for entry in explain_bins(region.get(LOC_BINS) or [], tuple(result.image_size)):
            rows.append(
                [
                    region["index"] + 1,
                    region["label"],
                    entry["token"],
                    entry["axis"],
                    entry["bin"],
                    entry["formula"],
                    entry["pixel"],
                ]  # fmt: skip
            )
            if len(rows) >= max_rows:
                return rows
    return rows


def prompt_box_lines(result: Any) -> list[str]:
    """``#1 [34, 160, 597, 372] px → <loc_53><loc_333>…``: how drawn boxes became prompt tokens."""
    lines = []
    for i, (box, prompt) in enumerate(zip(result.boxes or [], result.prompts or [], strict=False)):
        bins = parse_loc_bins(prompt)
        pixels = ", ".join(f"{v:g}" for v in box)
        tokens = "".join(f"<loc_{b}>" for b in bins)
        lines.append(f"#{i + 1} [{pixels}] px → {tokens}")
    return lines


def _code(text: str) -> str:
    return "`" + text.replace("`", "'") + "`" if text else "—"


def explain_markdown(result: Any, num_image_tokens: int | None = None) -> str:
    """Markdown for the teaching view: the task, the exact prompts, token counts, timings."""
    spec = get_task(result.task)
    width, height = result.image_size
    lines = [
        f"### {spec.name} `{spec.token}`",
        md_tokens(spec.explanation),
        "",
        f"Image {width}×{height} px. Every position is one of {NUM_BINS} bins per axis: "
        f"one x bin = {width / NUM_BINS:.2f} px, one y bin = {height / NUM_BINS:.2f} px; "
        "a bin is read back at its centre, pixel = (bin + 0.5) × size / 1000.",
        "",
        "| # | prompt sent (task token) | what the model reads | input tokens | generated tokens |",
        "|---|---|---|---|---|",
    ]
    model_prompts = result.model_prompts or [""] * len(result.prompts)
    for i, prompt in enumerate(result.prompts or []):
        total = result.prompt_tokens[i] if i < len(result.prompt_tokens) else None
        if total is not None and num_image_tokens:
            tokens = f"{total} = {num_image_tokens} image + {total - num_image_tokens} text"
        else:
            tokens = "—" if total is None else str(total)
        generated = result.generated_tokens[i] if i < len(result.generated_tokens) else "—"
        model_prompt = model_prompts[i] if i < len(model_prompts) else ""
        lines.append(f"| {i + 1} | {_code(prompt)} | {_code(model_prompt)} | {tokens} | {generated} |")
    if not result.prompts:
        lines.append("| – | (parsed from recorded text: no prompt was sent) | | | |")
    boxes = prompt_box_lines(result)
    if boxes:
        lines += ["", "**Your boxes, quantised to bins by the processor:**", ""]
        lines += [f"- `{line}`" for line in boxes]
    if result.truncated:
        lines += ["", "⚠️ **The answer was cut off at max_new_tokens**: the output below is incomplete."]
    timings = result.timings or {}
    if timings:
        parts = [f"{k.removesuffix('_s')} {v:.3f} s" for k, v in timings.items()]
        cached = " · image features from cache" if result.cached_features else ""
        lines += ["", "Timings: " + " · ".join(parts) + cached]
    return "\n".join(lines)


def _label_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    path = font_for(["0123456789"])
    try:
        return ImageFont.truetype(path, size) if path else ImageFont.load_default(size)
    except OSError:
        return ImageFont.load_default()


def grid_overlay(image: Image.Image, *, major: int = 100, minor: int = 50) -> Image.Image:
    """The image with Florence-2's 1000-bin grid: a line every ``minor`` bins, labelled every ``major``.

    Lines sit at bin boundaries (bin × size / 1000), computed from the image's
    own size, so the overlay is right on an upscaled rendering too.
    """
    base = image.convert("RGBA")
    width, height = base.size
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    font_size = max(11, round(max(width, height) / 60))
    font = _label_font(font_size)
    line = max(1, round(max(width, height) / 900))
    for b in range(0, NUM_BINS + 1, minor):
        strong = b % major == 0
        colour = (255, 255, 255, 200) if strong else (255, 255, 255, 90)
        x = min(width - 1, round(b * width / NUM_BINS))
        y = min(height - 1, round(b * height / NUM_BINS))
        draw.line([(x, 0), (x, height)], fill=(0, 0, 0, 110 if strong else 50), width=line + 2)
        draw.line([(x, 0), (x, height)], fill=colour, width=line)
        draw.line([(0, y), (width, y)], fill=(0, 0, 0, 110 if strong else 50), width=line + 2)
        draw.line([(0, y), (width, y)], fill=colour, width=line)
    for b in range(0, NUM_BINS, major):
        x = round(b * width / NUM_BINS)
        y = round(b * height / NUM_BINS)
        for text, pos in ((f"x{b}", (x + 3, 2)), (f"y{b}", (2, y + 3))):
            if b == 0 and text.startswith("y"):
                pos = (2, font_size + 8)
            box = draw.textbbox(pos, text, font=font)
            draw.rectangle((box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1), fill=(0, 0, 0, 160))
            draw.text(pos, text, fill=(255, 255, 255, 255), font=font)
    return Image.alpha_composite(base, overlay).convert("RGB")


# ---- the model's own tokens, its eye and where it looked (from an Explanation) ----------------------------
#: the colour scale of token probabilities and the heatmap (perceptually uniform, readable for colour-blind eyes)
PROBABILITY_CMAP, HEATMAP_CMAP = "viridis", "inferno"
ALTERNATIVE_HEADERS = ["rank", "token", "probability", ""]
#: pixels / decimals shown for every pixel value of the teaching view (the bins table rounds the same way)
PIXEL_DECIMALS = 2
_LOC_PIECE = re.compile(r"<loc_(\d+)>")


def token_kind(piece: str) -> str | None:
    """``location`` for ``<loc_N>``, ``special`` for ``<s>`` / ``</s>`` / ``<pad>``, ``task`` for a task token."""
    if _LOC_PIECE.fullmatch(piece):
        return LOCATION
    if piece in ("<s>", "</s>", "<pad>", "<unk>"):
        return SPECIAL
    if re.fullmatch(r"</?[A-Za-z_]+>", piece):
        return TASK
    return None


def _cmap(name: str) -> Any:
    from matplotlib import colormaps

    return colormaps[name]


def probability_colours(probability: float | None) -> tuple[str, str]:
    """(background, text) colours for a token of this probability: viridis, with black or white text for contrast."""
    if probability is None or not math.isfinite(probability):
        return "#e5e7eb", "#111827"
    r, g, b, _ = _cmap(PROBABILITY_CMAP)(min(1.0, max(0.0, float(probability))))
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return (
        f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}",
        "#000000" if luminance > 0.45 else "#ffffff",
    )


def _shown(text: str, piece: str) -> str:
    """A token's text as shown: spaces as a middle dot, new lines as ↵, special pieces by name."""
    if token_kind(piece) is not None or not text:
        return piece
    return text.replace(" ", "·").replace("\n", "↵")


def _legend() -> str:
    stops = ", ".join(probability_colours(p / 10)[0] for p in range(11))
    return (
        '<div class="tk-legend" style="display:flex;align-items:center;gap:.5rem;margin-top:.4rem;font-size:.9em">'
        '<span>probability 0</span><span style="display:inline-block;width:12rem;height:.9rem;border-radius:3px;'
        f'background:linear-gradient(to right, {stops})"></span><span>1</span>'
        '<span style="opacity:.8">· a space is shown as ·; click a token to see where it looked</span></div>'
    )


def tokens_html(tokens: Sequence[Any], *, selected: int | None = None,
                alternatives: Sequence[Sequence[tuple[str, float]]] | None = None, rows: int = 1) -> str:  # fmt: skip
    """The generated tokens, each a chip coloured by its probability, clickable (``data-index``), escaped.

    ``tokens`` are :class:`~florence_ui.model.explain.ExplainedToken`-like
    (``row``, ``piece``, ``text``, ``probability``, ``id``). The tooltip names
    the piece, its id, its probability and the top alternatives at its step.
    """
    parts = ['<div class="tk-tokens" style="line-height:2.1;font-family:ui-monospace,monospace;font-size:1.05em">']
    row = None
    for i, t in enumerate(tokens):
        if rows > 1 and t.row != row:
            row = t.row
            parts.append(f'<div class="tk-row" style="font-weight:600;margin-top:.3rem">Box #{row + 1}</div>')
        bg, fg = probability_colours(t.probability)
        prob = "—" if t.probability is None else f"{t.probability:.3f}"
        tip = f"#{i} {t.piece!r} (id {t.id}) p = {prob}"
        if alternatives is not None and i < len(alternatives):
            tip += " | next best: " + ", ".join(f"{p} {q:.3f}" for p, q in alternatives[i][:3])
        outline = "outline:3px solid #ef4444;outline-offset:1px;" if i == selected else ""
        kind = token_kind(t.piece) or "word"
        parts.append(
            f'<span class="tk tk-{kind}" data-index="{i}" role="button" tabindex="0" title="{html.escape(tip)}" '
            f'style="background:{bg};color:{fg};{outline}padding:.1rem .25rem;margin:1px;border-radius:4px;'
            f'cursor:pointer;white-space:pre">{html.escape(_shown(t.text, t.piece))}</span>'
        )
    parts.append("</div>")
    return "".join(parts) + _legend()


def input_tokens_html(model_prompt: str, pieces: Sequence[str], num_image_tokens: int, side: int,
                      eye_size: tuple[int, int] | None = None) -> str:  # fmt: skip
    """What the encoder reads: the image tokens (patches + pooled) as one chip, then the sentence's own tokens."""
    size = f" of the {eye_size[0]}×{eye_size[1]} input" if eye_size else ""
    chips = [
        f'<span class="tk-image" style="background:#6366f1;color:#fff;padding:.1rem .4rem;border-radius:4px;margin:1px"'
        f' title="{side}×{side} patches{size}, plus 1 pooled token (their mean)">'
        f"{num_image_tokens} image tokens = {side}×{side} patches + 1 pooled</span>"
    ]
    for piece in pieces:
        text = piece.replace("Ġ", "·").replace("Ċ", "↵")
        chips.append(
            '<span class="tk-in" style="background:var(--background-fill-secondary, #f3f4f6);padding:.1rem .25rem;'
            f'margin:1px;border-radius:4px;border:1px solid var(--border-color-primary, #d1d5db);white-space:pre">'
            f"{html.escape(text)}</span>"
        )
    return (
        f'<div class="tk-input"><div style="margin-bottom:.3rem">The sentence the task token became: '
        f"<b>{html.escape(model_prompt)}</b> ({len(pieces)} text tokens)</div>"
        f'<div style="line-height:2.1;font-family:ui-monospace,monospace">{"".join(chips)}</div></div>'
    )


def patch_grid(eye: Image.Image, side: int, *, min_side: int = 384) -> Image.Image:
    """The model's eye with its ``side × side`` patch grid (what one image token covers), every 4th line strong.

    A small input (a toy checkpoint's) is enlarged to ``min_side`` with square pixels first, so the grid is visible.
    """
    if max(eye.size) < min_side:
        factor = -(-min_side // max(eye.size))
        eye = eye.resize((eye.width * factor, eye.height * factor), Image.NEAREST)
    base = eye.convert("RGBA")
    width, height = base.size
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for k in range(side + 1):
        x = min(width - 1, round(k * width / side))
        y = min(height - 1, round(k * height / side))
        alpha = 220 if k % 4 == 0 else 120
        draw.line([(x, 0), (x, height)], fill=(255, 255, 255, alpha), width=1)
        draw.line([(0, y), (width, y)], fill=(255, 255, 255, alpha), width=1)
    return Image.alpha_composite(base, overlay).convert("RGB")


def attention_heatmap(
    picture: Image.Image, grid: np.ndarray, *, alpha: float = 0.6, smooth: bool = False
) -> Image.Image:
    """``grid`` (side × side weights) over ``picture``: each patch's cell coloured by its weight.

    The model's eye stretches the whole picture to a square, so patch ``(r, c)``
    covers the same fraction of the original picture; the heatmap is stretched
    back the same way. Colours are relative to this token's largest weight
    (inferno: black → yellow), and the overlay is opaque where the weight is high.
    """
    weights = np.asarray(grid, dtype=np.float64)
    top = float(weights.max()) if weights.size else 0.0
    scaled = weights / top if top > 0 else weights
    rgba = (_cmap(HEATMAP_CMAP)(scaled) * 255).astype(np.uint8)
    rgba[..., 3] = (np.clip(scaled, 0, 1) * 255 * alpha).astype(np.uint8)
    heat = Image.fromarray(rgba, "RGBA").resize(picture.size, Image.BILINEAR if smooth else Image.NEAREST)
    dimmed = Image.blend(picture.convert("RGB"), Image.new("RGB", picture.size, (0, 0, 0)), 0.35).convert("RGBA")
    return Image.alpha_composite(dimmed, heat).convert("RGB")


def location_line(picture: Image.Image, piece: str, axis: str) -> Image.Image:
    """For a ``<loc_N>`` token: a dashed line where its bin lands on the picture (x: vertical, y: horizontal)."""
    match = _LOC_PIECE.fullmatch(piece)
    if not match:
        return picture
    out = picture.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    width, height = out.size
    value = bin_to_pixel(int(match.group(1)), width if axis == "x" else height)
    line = max(2, round(max(width, height) / 300))
    dash = max(6, line * 4)
    length = height if axis == "x" else width
    for start in range(0, length, dash * 2):
        end = min(length, start + dash)
        seg = [(value, start), (value, end)] if axis == "x" else [(start, value), (end, value)]
        draw.line(seg, fill=(34, 211, 238), width=line)
    return out


def location_axes(tokens: Sequence[Any]) -> list[str | None]:
    """Per token, ``x`` / ``y`` for a ``<loc_N>`` (they alternate x, y within an answer row), else None."""
    axes: list[str | None] = []
    count: dict[int, int] = {}
    for t in tokens:
        if token_kind(t.piece) == LOCATION:
            n = count.get(t.row, 0)
            axes.append("x" if n % 2 == 0 else "y")
            count[t.row] = n + 1
        else:
            axes.append(None)
    return axes


def alternatives_rows(alternatives: Sequence[tuple[str, float]], chosen: str,
                      chosen_probability: float | None = None) -> list[list[Any]]:  # fmt: skip
    """The top-k table of one step: rank, token, probability, ✓ for the token the answer has.

    When the answer's token is not among the top k (beam search can keep a
    lower-ranked token, a replayed answer need not be the model's favourite), it
    is added as a last row with its own probability, so the table always shows it.
    """
    rows = [
        [rank + 1, piece, round(float(p), 4), "✓ chosen" if piece == chosen else ""]
        for rank, (piece, p) in enumerate(alternatives)
    ]
    if all(piece != chosen for piece, _ in alternatives):
        p = "—" if chosen_probability is None or not math.isfinite(chosen_probability) else round(chosen_probability, 4)
        rows.append(["—", chosen, p, f"✓ chosen (not in the top {len(alternatives)})"])
    return rows


def outline_vs_mask(image: Image.Image, result: Any) -> Image.Image | None:
    """Florence-2's own outline (left) beside SAM's mask (right) for a run refined with SAM; None otherwise.

    Florence-2 draws a region as a polygon of at most ~100 points on its 1000-bin grid (or only a box);
    SAM's mask follows the pixels. Side by side, on the same picture and in the same colours (supervision's
    MaskAnnotator over ``sv.polygon_to_mask`` of Florence-2's polygons, and over SAM's mask), the class sees
    what refinement adds. Rows without a Florence-2 polygon show their box.
    """
    import supervision as sv

    from florence_ui.core.fields import POLYGONS

    det = getattr(result, "detections", None)
    if det is None or det.mask is None or len(det) == 0 or image is None:
        return None
    scene = np.asarray(image.convert("RGB"))
    height, width = scene.shape[:2]
    florence = np.zeros((len(det), height, width), dtype=bool)
    for i in range(len(det)):
        parts = det.data[POLYGONS][i] if POLYGONS in det.data else []
        for part in parts or []:
            points = np.asarray(part, dtype=np.float32).reshape(-1, 2)
            if len(points) >= 3:
                florence[i] |= sv.polygon_to_mask(points.round().astype(np.int32), (width, height)).astype(bool)
        if not florence[i].any():  # no polygon: Florence-2's answer is its box
            x1, y1, x2, y2 = (int(round(v)) for v in det.xyxy[i])
            florence[i, max(0, y1) : max(0, y2), max(0, x1) : max(0, x2)] = True
    rows = sv.Detections(xyxy=det.xyxy.copy(), class_id=np.arange(len(det)))
    masks = sv.MaskAnnotator(opacity=0.55, color_lookup=sv.ColorLookup.INDEX)
    boxes = sv.BoxAnnotator(thickness=max(1, min(width, height) // 300), color_lookup=sv.ColorLookup.INDEX)
    left = boxes.annotate(masks.annotate(scene.copy(), replace(rows, mask=florence)), rows)
    right = boxes.annotate(masks.annotate(scene.copy(), replace(rows, mask=np.asarray(det.mask, dtype=bool))), rows)
    gap = max(4, width // 100)
    canvas = Image.new("RGB", (width * 2 + gap, height + 28), "white")
    canvas.paste(Image.fromarray(left), (0, 28))
    canvas.paste(Image.fromarray(right), (width + gap, 28))
    pen = ImageDraw.Draw(canvas)
    font = _label_font(18)
    pen.text((6, 4), "Florence-2: its polygon (or box)", fill="black", font=font)
    pen.text((width + gap + 6, 4), "SAM: its mask from that box", fill="black", font=font)
    return canvas
