"""The teaching view: what went in, what came out, and how ``<loc_N>`` becomes pixels.

Florence-2 is a sequence-to-sequence model: a task token (plus text or
``<loc_N>`` box tokens) goes in next to the image's tokens, and plain text with
``<loc_N>`` tokens comes out; every position is one of 1000 bins per axis.
These pure helpers turn a ``FlorenceResult`` into the tables and pictures a
teacher shows: the exact prompts and token counts, the raw output with its
location tokens highlighted, a bins → pixels table per region, and a 1000-bin
grid over the image. No gradio here; the UI only displays what they return.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from florence_ui.core.fields import LOC_BINS
from florence_ui.core.geometry import NUM_BINS, explain_bins, parse_loc_bins
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
        f"one x bin = {width / NUM_BINS:.3g} px, one y bin = {height / NUM_BINS:.3g} px; "
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
