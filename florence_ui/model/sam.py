"""SAM as an optional segmenter: crisp masks from boxes (Florence-2's, or drawn) and from clicks.

Florence-2 draws polygons of a few dozen ``<loc_N>`` points and boxes for
everything else; SAM turns any box or click into a pixel mask. Only
transformers' native classes are used (no remote code): ``SamModel`` +
``SamProcessor`` for SAM 1 checkpoints (``facebook/sam-vit-*``, SlimSAM), whose
image processor has a PIL backend and so runs without torchvision, and
``Sam2Model`` + ``Sam2Processor`` for SAM 2 checkpoints, whose processor imports
torchvision: without it a SAM 2 checkpoint is a :class:`SamLoadError` that says
so (torchvision is never imported otherwise).

Loading follows :mod:`florence_ui.model.loading` (the same device / dtype
rules, the same "cache first when the Hub cannot be reached" and the same
cause-and-fix messages, re-worded for SAM) and is lazy: :func:`load_sam` returns
a :class:`SamSegmenter` that reads its weights on first use, so an app started
with ``sam=`` pays nothing until someone refines, and a bad checkpoint fails
that refine (with the message), not the app.

One image, one encoder pass: SAM's cost is its ViT image encoder (~90 % of a
call); the prompt encoder + mask decoder is small. The segmenter keeps an LRU
cache of image embeddings keyed by the image's pixels (:func:`image_identity`,
the same "same pixels → same entry" rule as the engine's feature cache), so a
second refine or click on the same image runs the decoder only. All prompts of
one call — N boxes, or N clicked objects — go through one decoder call.

Choices (see also :func:`group_clicks`):

* box prompts use ``multimask_output=False`` (a box is unambiguous; SAM's
  authors recommend the single mask for it);
* point prompts use ``multimask_output=True`` and keep, per object, the one of
  the three masks SAM's own IoU head scores highest (a single click is
  ambiguous: part, object or group);
* the mask threshold is SAM's (logit 0); masks are returned at image size as
  ``bool``; ``iou_scores`` of the kept mask go to ``data[SAM_SCORE]``.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv
from PIL import Image

from florence_ui.core import limits
from florence_ui.core.fields import SAM_BOX, SAM_POINTS, SAM_POLYGONS, SAM_SCORE
from florence_ui.core.images import image_identity
from florence_ui.errors import InputError, ModelLoadError, SamLoadError
from florence_ui.model.loading import explain_load_error, hub_reachable, resolve_device, resolve_dtype

__all__ = [
    "DEFAULT_SAM",
    "SAM_ALIASES",
    "SamEmbedding",
    "SamLoadError",
    "SamSegmenter",
    "group_clicks",
    "load_sam",
    "mask_polygons",
    "resolve_sam_id",
]

#: short names for the SAM checkpoints that load with transformers' native classes
SAM_ALIASES: dict[str, str] = {
    "sam-base": "facebook/sam-vit-base",
    "sam-large": "facebook/sam-vit-large",
    "sam-huge": "facebook/sam-vit-huge",
    #: SlimSAM-50: SAM-ViT-B pruned to half its width (hidden 384), 28 M parameters instead of 94 M; same decoder
    "slimsam": "nielsr/slimsam-50-uniform",
    #: SlimSAM-77: pruned further (a ~39 MB checkpoint)
    "slimsam-77": "Zigeng/SlimSAM-uniform-77",
    #: SAM 2.1 (Hiera-tiny): needs torchvision (its processor imports it)
    "sam2-tiny": "facebook/sam2.1-hiera-tiny",
}
#: what a CPU Space should load: a cold refine (image encoder + decoder) takes 0.6x SAM-ViT-B's time on 2 CPU
#: threads (``benchmarks/bench_sam.py``: 4.4 s vs 7.3 s for 8 boxes on a 640x480 image), its download is 112 MB
#: instead of 375 MB, and a cached refine or click is decoder-only for both
DEFAULT_SAM = "slimsam"

#: masks up-sampled to image size per post-processing step: bounds the float scratch (n x H x W float32)
_POST_CHUNK = 8


def resolve_sam_id(model: str) -> str:
    """Alias → hub id; a hub id or a local directory passes through unchanged."""
    return SAM_ALIASES.get(model.strip(), model.strip())


def explain_sam_error(model_id: str, revision: str | None, exc: BaseException) -> str:
    """:func:`~florence_ui.model.loading.explain_load_error`'s cause and fix, worded for SAM.

    The same causes (offline, no such repository, gated, not a checkpoint, full
    disk); only the names change: the flag is ``--sam`` and the aliases are SAM's.
    """
    from huggingface_hub import errors as hf_errors

    message = explain_load_error(model_id, revision, exc)
    aliases = ", ".join(f"{k} = {v}" for k, v in SAM_ALIASES.items())
    if isinstance(exc, hf_errors.RepositoryNotFoundError) and not isinstance(exc, hf_errors.GatedRepoError):
        message = message.split("\nFix:", 1)[0] + f"\nFix: Check the id, or use an alias: {aliases}"
    swaps = [
        ("Could not load Florence-2 model", "Could not load SAM model"),
        ("a complete Florence-2 checkpoint", "a complete SAM checkpoint"),
        ("the processor/tokenizer files", "the processor's preprocessor_config.json"),
        ("--model DIR", "--sam DIR"),
        ("alias (base, large, base-ft, large-ft)", f"alias ({', '.join(SAM_ALIASES)})"),
    ]
    for old, new in swaps:
        message = message.replace(old, new)
    return message + "\nFlorence-2 itself still works: only SAM refinement and click segmentation are off."


def _torchvision_missing() -> str | None:
    """Why SAM 2 cannot run here (its processor imports torchvision), or None. Looks, never imports."""
    import importlib.util

    if importlib.util.find_spec("torchvision") is None:
        return "SAM 2's processor (Sam2Processor) needs torchvision, which is not installed"
    return None


@dataclass(frozen=True)
class SamEmbedding:
    """One image's SAM embedding and the sizes SAM's coordinates need; ``cached``: from the LRU cache."""

    #: SAM 1: ``(1, 256, 64, 64)``; SAM 2: the list of its multi-level feature maps
    embeddings: Any
    #: (height, width) of the image
    original_size: tuple[int, int]
    #: (height, width) after the longest-edge resize, before padding (SAM 1's coordinate frame)
    reshaped_size: tuple[int, int]
    cached: bool = False


def group_clicks(
    points: Sequence[Sequence[float]], point_labels: Sequence[int] | None = None
) -> list[list[tuple[float, float, int]]]:
    """Clicks → objects: **each positive click starts an object; a negative click belongs to the object before it.**

    ``point_labels``: 1 positive (a click), 0 negative (a shift-click); all
    positive when omitted. So ``click A, shift-click B, click C`` is two
    objects, ``[A+, B-]`` and ``[C+]``: a shift-click corrects the object just
    clicked, as in SAM's own demos. A negative click before any positive one has
    no object to correct: :class:`InputError`. Coordinates are pixels of the
    original image.
    """
    if isinstance(points, str | bytes) or not isinstance(points, Sequence):
        raise InputError(f"points must be a list of (x, y) pixel pairs, got {type(points).__name__}.")
    labels = [1] * len(points) if point_labels is None else list(point_labels)
    if len(labels) != len(points):
        raise InputError(f"{len(points)} points but {len(labels)} point labels: give one label (1 or 0) per point.")
    groups: list[list[tuple[float, float, int]]] = []
    for i, (point, label) in enumerate(zip(points, labels, strict=True)):
        try:
            x, y = (float(v) for v in point)
        except (TypeError, ValueError) as exc:
            raise InputError(f"Point {i + 1} must be two numbers (x, y) in pixels, got {point!r}.") from exc
        if not (np.isfinite(x) and np.isfinite(y)):
            raise InputError(f"Point {i + 1} must be finite pixel coordinates, got {point!r}.")
        if label not in (0, 1, True, False):
            raise InputError(f"Point {i + 1} has label {label!r}: use 1 (positive click) or 0 (negative).")
        if int(label) == 1:
            groups.append([(x, y, 1)])
        elif not groups:
            raise InputError(
                f"Point {i + 1} is a negative click (shift-click) with no positive click before it: "
                "click the object first, then shift-click what is not part of it."
            )
        else:
            groups[-1].append((x, y, 0))
    return groups


def mask_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """A boolean mask's outer outlines as (k, 2) float pixel polygons (``sv.mask_to_polygons``; empty mask → [])."""
    if not mask.any():
        return []
    return [p.astype(np.float32) for p in sv.mask_to_polygons(mask) if len(p) >= 3]


def _object_array(items: list[Any]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


@dataclass(frozen=True)
class _Loaded:
    model: Any
    processor: Any
    family: str  # "sam" or "sam2"
    device: str
    dtype: Any


class SamSegmenter:
    """SAM for one checkpoint: lazy weights, an LRU cache of image embeddings, one decoder call per request.

    Thread-safe like :class:`~florence_ui.model.engine.FlorenceEngine`: one
    lock around the model, one around the cache. A load failure is remembered
    (the same :class:`SamLoadError` again, without retrying the Hub on every click).
    """

    def __init__(
        self,
        model: str = DEFAULT_SAM,
        *,
        revision: str | None = None,
        device: str | None = "auto",
        dtype: str | None = "auto",
        cache_size: int = 8,
    ) -> None:
        self.model_id = resolve_sam_id(model)
        self.revision = revision
        self.requested_device = device
        self.requested_dtype = dtype
        self.cache_size = int(cache_size)
        self._loaded: _Loaded | None = None
        self._error: SamLoadError | None = None
        self._load_lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._cache: OrderedDict[str, SamEmbedding] = OrderedDict()

    # ---- loading ----------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def load(self) -> SamSegmenter:
        """Read the weights now (a no-op once loaded); :class:`SamLoadError` with cause and fix otherwise."""
        self._ensure()
        return self

    def _ensure(self) -> _Loaded:
        if self._loaded is not None:
            return self._loaded
        with self._load_lock:
            if self._loaded is None:
                if self._error is not None:
                    raise SamLoadError(str(self._error))
                try:
                    self._loaded = self._read()
                except SamLoadError as exc:
                    self._error = exc
                    raise
        return self._loaded

    def _read(self) -> _Loaded:
        from transformers import AutoConfig

        try:
            device = resolve_device(self.requested_device)
            dtype = resolve_dtype(self.requested_dtype, device)
        except ModelLoadError as exc:
            raise SamLoadError(str(exc)) from exc
        if (self.requested_dtype or "").lower() == "int8":
            raise SamLoadError("dtype int8 is for Florence-2 only; SAM runs in auto, float32, float16 or bfloat16.")
        source = str(Path(self.model_id).expanduser()) if self.model_id.startswith("~") else self.model_id
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
        extra: dict[str, Any] = {}
        if not (Path(source).exists() or offline or hub_reachable()):
            extra["local_files_only"] = True  # cache first when the Hub cannot be reached (as loading does)
        try:
            config = AutoConfig.from_pretrained(source, revision=self.revision, **extra)
        except Exception as exc:  # every loading failure becomes one clear message
            raise SamLoadError(explain_sam_error(self.model_id, self.revision, exc)) from exc
        kind = str(getattr(config, "model_type", ""))
        if kind == "sam":
            from transformers import SamModel, SamProcessor

            model_cls, processor_cls, family = SamModel, SamProcessor, "sam"
        elif kind.startswith("sam2"):
            why = _torchvision_missing()
            if why:
                raise SamLoadError(
                    f"Could not load SAM model '{self.model_id}': {why}.\nFix: pip install torchvision, or use a "
                    f"SAM 1 checkpoint, which runs without it: {', '.join(k for k in SAM_ALIASES if 'sam2' not in k)}."
                )
            from transformers import Sam2Model, Sam2Processor

            model_cls, processor_cls, family = Sam2Model, Sam2Processor, "sam2"
        else:
            raise SamLoadError(
                f"Could not load SAM model '{self.model_id}': its config is a {kind or 'unknown'!r} model, not SAM.\n"
                f"Fix: pass a SAM checkpoint to --sam / sam= (an alias: {', '.join(SAM_ALIASES)}, a hub id or a folder)."
            )
        try:
            processor = processor_cls.from_pretrained(source, revision=self.revision, **extra)
            net = model_cls.from_pretrained(source, revision=self.revision, dtype=dtype, **extra)
        except Exception as exc:  # every loading failure becomes one clear message
            raise SamLoadError(explain_sam_error(self.model_id, self.revision, exc)) from exc
        net.to(device)
        net.eval()
        return _Loaded(net, processor, family, device, dtype)

    @property
    def model(self) -> Any:
        """The loaded ``SamModel`` / ``Sam2Model`` (loads it on first access)."""
        return self._ensure().model

    @property
    def processor(self) -> Any:
        """The loaded ``SamProcessor`` / ``Sam2Processor`` (loads it on first access)."""
        return self._ensure().processor

    @property
    def device(self) -> str:
        return self._ensure().device

    @property
    def dtype(self) -> Any:
        return self._ensure().dtype

    def describe(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        if self._loaded is None:
            return f"{self.model_id}{rev} (not loaded yet)"
        return f"{self.model_id}{rev} · {self._loaded.device} · {str(self._loaded.dtype).replace('torch.', '')}"

    # ---- the image embedding ----------------------------------------------------------------
    def cache_key(self, image: Image.Image) -> str:
        """The embedding cache's key: this checkpoint + the image's pixels (same pixels → same entry)."""
        return f"{self.model_id}:{image_identity(image)}"

    def embed(self, image: Image.Image, *, use_cache: bool = True) -> SamEmbedding:
        """SAM's image embedding: from the cache, else one image-encoder pass (remembered, LRU)."""
        import torch

        loaded = self._ensure()
        if not isinstance(image, Image.Image):
            raise InputError("The image must be a PIL image.")
        image = image.convert("RGB") if image.mode != "RGB" else image
        key = self.cache_key(image) if use_cache and self.cache_size > 0 else None
        if key is not None:
            with self._cache_lock:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    hit = self._cache[key]
                    return SamEmbedding(hit.embeddings, hit.original_size, hit.reshaped_size, cached=True)
        encoded = loaded.processor.image_processor(images=image, return_tensors="pt")
        pixels = encoded["pixel_values"].to(loaded.device, loaded.dtype)
        original = tuple(int(v) for v in encoded["original_sizes"][0])
        reshaped = (
            tuple(int(v) for v in encoded["reshaped_input_sizes"][0]) if "reshaped_input_sizes" in encoded else original
        )
        with self._model_lock, torch.inference_mode():
            embeddings = loaded.model.get_image_embeddings(pixels)
        got = SamEmbedding(embeddings, original, reshaped, cached=False)  # type: ignore[arg-type]
        if key is not None:
            with self._cache_lock:
                self._cache[key] = got
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return got

    def clear_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    # ---- prompts → masks ----------------------------------------------------------------------
    def segment(
        self,
        image: Image.Image,
        points: Sequence[Sequence[float]] | None = None,
        boxes: Sequence[Sequence[float]] | None = None,
        point_labels: Sequence[int] | None = None,
        *,
        use_cache: bool = True,
        timings: dict[str, float] | None = None,
    ) -> sv.Detections:
        """Masks for ``boxes`` (one object each) and/or clicked ``points`` (grouped by :func:`group_clicks`).

        Boxes alone: one mask per box. Points alone: one mask per positive click
        (with its negative clicks). Both: as many boxes as click groups, each
        object prompted by its box *and* its clicks. Everything runs in one
        decoder call on one (cached) embedding. Returns ``sv.Detections`` with
        ``mask`` ``(n, H, W)`` bool at image size, ``xyxy`` the masks' extent
        (the prompt box for an empty mask), ``data[SAM_SCORE]`` SAM's IoU
        estimate, ``data[SAM_POLYGONS]`` the masks' outlines and, for clicks,
        ``data[SAM_POINTS]``. ``timings`` (if given) gets ``sam_embed_s``,
        ``sam_decode_s`` and ``sam_cached`` (1.0 when the embedding was cached).
        """
        import torch

        groups = group_clicks(points, point_labels) if points is not None and len(points) else []
        box_list = [self._check_box(b, i, image) for i, b in enumerate(boxes or [])]
        if not groups and not box_list:
            raise InputError("SAM needs at least one prompt: a box, or a click on the object.")
        if groups and box_list and len(groups) != len(box_list):
            raise InputError(
                f"{len(box_list)} boxes and {len(groups)} clicked objects: with both, give one box per object "
                "(each object is prompted by its box and its clicks), or send them separately."
            )
        count = max(len(groups), len(box_list))
        cap = limits.current().max_boxes
        if count > cap:
            raise InputError(
                f"{count} objects to segment; the per-request limit is {cap} (FLORENCE_UI_MAX_BOXES). "
                "Send fewer boxes or clicks at a time."
            )
        loaded = self._ensure()
        t0 = time.perf_counter()
        emb = self.embed(image, use_cache=use_cache)
        t1 = time.perf_counter()
        inputs = self._prompt_tensors(loaded, emb, groups, box_list)
        multimask = bool(groups)  # clicks are ambiguous: pick the best of 3; boxes are not
        with self._model_lock, torch.inference_mode():
            out = loaded.model(image_embeddings=emb.embeddings, multimask_output=multimask, **inputs)
        scores = out.iou_scores[0].float()  # (n, k)
        best = scores.argmax(dim=-1)  # k == 1 for boxes
        index = torch.arange(count)
        logits = out.pred_masks[0][index, best].float()  # (n, h, w)
        iou = scores[index, best].cpu().numpy().astype(np.float32)
        masks = self._post_process(loaded, logits, emb)
        t2 = time.perf_counter()
        if timings is not None:
            timings["sam_embed_s"] = t1 - t0
            timings["sam_decode_s"] = t2 - t1
            timings["sam_cached"] = float(emb.cached)
        det = detections_from_masks(masks, iou, [b for b in box_list] if box_list else None)
        if groups:
            det.data[SAM_POINTS] = _object_array([[list(p) for p in group] for group in groups])
        return det

    @staticmethod
    def _check_box(box: Sequence[float], i: int, image: Image.Image) -> list[float]:
        from florence_ui.core.geometry import BoxError, validate_box

        try:
            return list(validate_box(box, image.size).box)
        except BoxError as exc:
            raise InputError(f"Box {i + 1}: {exc}") from exc

    @staticmethod
    def _prompt_tensors(
        loaded: _Loaded, emb: SamEmbedding, groups: list[list[tuple[float, float, int]]], boxes: list[list[float]]
    ) -> dict[str, Any]:
        """Pixel prompts → the model's frame: ``input_boxes (1, n, 4)``, ``input_points (1, n, p, 2)``, labels.

        SAM 1 scales by the processor's own resize (``reshaped / original``, as
        ``SamProcessor`` does; a test holds us to its numbers) so a cached
        embedding needs no image preprocessing; SAM 2's processor takes the
        original size instead of the image. Objects with fewer clicks are padded
        with label -10, which SAM's prompt encoder ignores.
        """
        import torch

        width = max((len(g) for g in groups), default=0)
        pts = [[[x, y] for x, y, _ in g] + [[0.0, 0.0]] * (width - len(g)) for g in groups]
        lab = [[label for *_, label in g] + [-10] * (width - len(g)) for g in groups]
        if loaded.family == "sam2":
            kwargs: dict[str, Any] = {"original_sizes": [list(emb.original_size)], "return_tensors": "pt"}
            if groups:
                kwargs |= {"input_points": [pts], "input_labels": [lab]}
            if boxes:
                kwargs["input_boxes"] = [boxes]
            got = loaded.processor(**kwargs)
            return {k: got[k].to(loaded.device) for k in ("input_points", "input_labels", "input_boxes") if k in got}
        (oh, ow), (rh, rw) = emb.original_size, emb.reshaped_size
        scale = torch.tensor([rw / ow, rh / oh], dtype=torch.float64)
        out: dict[str, Any] = {}
        if groups:
            xy = torch.tensor(pts, dtype=torch.float64) * scale
            labels = torch.tensor(lab, dtype=torch.int64)
            out["input_points"] = xy[None].to(loaded.device, loaded.dtype)
            out["input_labels"] = labels[None].to(loaded.device)
        if boxes:
            corners = torch.tensor(boxes, dtype=torch.float64).reshape(-1, 2, 2) * scale
            out["input_boxes"] = corners.reshape(1, -1, 4).to(loaded.device, loaded.dtype)
        return out

    @staticmethod
    def _post_process(loaded: _Loaded, logits: Any, emb: SamEmbedding) -> np.ndarray:
        """Low-res mask logits ``(n, h, w)`` → ``(n, H, W)`` bool at image size, with the processor's own step."""
        height, width = emb.original_size
        out = np.zeros((logits.shape[0], height, width), dtype=bool)
        for start in range(0, logits.shape[0], _POST_CHUNK):
            chunk = [logits[start : start + _POST_CHUNK, None].cpu()]  # one "image" of (c, 1, h, w) masks
            if loaded.family == "sam2":
                [up] = loaded.processor.post_process_masks(chunk, [list(emb.original_size)])
            else:
                [up] = loaded.processor.post_process_masks(chunk, [list(emb.original_size)], [list(emb.reshaped_size)])
            out[start : start + up.shape[0]] = up[:, 0].numpy().astype(bool)
        return out


def detections_from_masks(
    masks: np.ndarray, iou: np.ndarray, prompt_boxes: Sequence[Sequence[float]] | None = None
) -> sv.Detections:
    """SAM's masks as ``sv.Detections``: xyxy from the masks, SAM's score, polygons (``sv.mask_to_polygons``).

    An empty mask (SAM found nothing) keeps its prompt box as ``xyxy`` (or a
    zero box for a click) and gets no polygon; its score says how sure SAM was.
    """
    n = len(masks)
    xyxy = sv.mask_to_xyxy(masks).astype(np.float32) if n else np.zeros((0, 4), dtype=np.float32)
    empty = ~masks.reshape(n, -1).any(axis=1) if n else np.zeros(0, dtype=bool)
    if prompt_boxes is not None:
        for i in np.flatnonzero(empty):
            xyxy[i] = np.asarray(prompt_boxes[i], dtype=np.float32)
    det = sv.Detections(xyxy=xyxy, mask=masks)
    det.data[SAM_SCORE] = np.asarray(iou, dtype=np.float32)
    det.data[SAM_BOX] = xyxy.copy()
    det.data[SAM_POLYGONS] = _object_array([mask_polygons(m) for m in masks])
    return det


def load_sam(
    model: str = DEFAULT_SAM,
    *,
    revision: str | None = None,
    device: str | None = "auto",
    dtype: str | None = "auto",
    cache_size: int = 8,
    lazy: bool = True,
) -> SamSegmenter:
    """A :class:`SamSegmenter` for an alias, hub id or folder; weights read on first use unless ``lazy=False``.

    ``lazy=False`` loads now (the CLI does, so a bad ``--sam`` stops before any
    image is processed); either way a failure is one :class:`SamLoadError`.
    """
    segmenter = SamSegmenter(model, revision=revision, device=device, dtype=dtype, cache_size=cache_size)
    return segmenter if lazy else segmenter.load()
