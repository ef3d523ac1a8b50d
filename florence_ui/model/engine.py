"""FlorenceEngine: the only code that runs the model.

One engine holds one loaded model (shared by every UI session, guarded by a
lock) and an LRU cache of image features: the vision tower is most of the
encoder's cost, and an interactive user asks many questions of one image, so a
second prompt on the same image feeds the cached features to ``generate``
through ``mm_encoder_outputs`` and skips it. All N boxes of a region task run as
one batched ``generate`` sharing those features.

Every caller goes through the same public pipeline: :meth:`FlorenceEngine.prepare`
validates one request (an :class:`InputError` for that request only),
:meth:`~FlorenceEngine.image_features` computes features for several images in
one vision call, and :meth:`~FlorenceEngine.generate` runs all rows of all
prepared requests in one ``generate`` and finishes each result once (token
counts, probabilities, timings, truncation, the time limit). :meth:`run` is the
one-request case; the batch runner and tiling use the same doors, and
:meth:`~FlorenceEngine.stream` is :meth:`run` event by event (see
:mod:`florence_ui.model.streaming`).
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import supervision as sv
from PIL import Image

from florence_ui.core import limits
from florence_ui.core.geometry import BoxError, loc_tokens, validate_box
from florence_ui.core.result import FlorenceResult
from florence_ui.core.tasks import TASK_TOKENS, OutputKind, Task, get_task
from florence_ui.errors import InputError
from florence_ui.model.generation import (
    MAX_NEW_TOKENS_LIMIT,
    Generation,
    GenerationInput,
    GenerationOutput,
    GenerationSettings,
    PreparedRequest,
    StepCallback,
    TransformersGeneration,
    rows_of,
)
from florence_ui.model.loading import LoadedModel, free_accelerator_memory, load_model, load_processor
from florence_ui.model.parsing import ClassRegistry, merge_rows_per_box, parse_one, text_input_box
from florence_ui.model.refine import CLICK_TASK, click_objects, refine_result
from florence_ui.model.sam import SamSegmenter, load_sam
from florence_ui.model.scoring import SPECIAL_PIECES
from florence_ui.model.streaming import StreamEvent, stream_request, stream_tiled
from florence_ui.model.tiling import run_tiled

if TYPE_CHECKING:
    import torch

__all__ = [
    "MAX_NEW_TOKENS_LIMIT",
    "FlorenceEngine",
    "GenerationSettings",
    "ImageFeatures",
    "InputError",
    "PreparedRequest",
    "StreamEvent",
    "image_key",
]

#: anything shaped like a token: ``<loc_5>``, ``<OD>``, ``</s>``, ``<poly>`` (checked against the real vocabulary)
_TOKEN_LIKE = re.compile(r"</?[^<>\s]{1,64}>")


def _answers(generated_text: Any, spec: Task) -> list[str]:
    """parse()'s answers as a list: one string, or (region tasks) one string per box; else InputError."""
    if isinstance(generated_text, str):
        return [generated_text]
    if isinstance(generated_text, Sequence) and all(isinstance(t, str) for t in generated_text):
        texts = list(generated_text)
        if not texts:
            raise InputError("No generated text to parse: give the answer (one per box for region tasks).")
        if len(texts) > 1 and not spec.needs_boxes:
            raise InputError(f"{spec.name} has one answer per image, got {len(texts)} generated texts.")
        return texts
    raise InputError(f"generated_text must be a string (or one string per box), got {type(generated_text).__name__}.")


def _image_size(image_size: Any) -> tuple[int, int]:
    """``(width, height)`` as two positive integers, else InputError (not IndexError, nor a 0×0 parse)."""
    try:
        if isinstance(image_size, str | bytes):
            raise TypeError("a string is not a size")
        width, height = (int(v) for v in image_size)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError(f"image_size must be (width, height) in pixels, got {image_size!r}.") from exc
    if width < 1 or height < 1:
        raise InputError(f"image_size must be positive, got {width}x{height}.")
    return width, height


def image_key(image: Image.Image) -> str:
    """Content hash of an image: same pixels → same cached features."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{image.mode}{image.size}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


class ImageFeatures(NamedTuple):
    """One image's projected features ``(1, tokens, dim)`` and whether they came from the cache."""

    features: torch.Tensor
    cached: bool


class _Decoded(NamedTuple):
    """One request's rows of a generate call, decoded."""

    texts: list[str]
    pieces: list[list[tuple[str, float]]]
    ids: list[list[int]]
    lengths: list[int]
    truncated: bool


class FlorenceEngine:
    """Florence-2 through transformers' native classes, one result type for every task.

    ``generation`` is the stage that turns model-ready rows into tokens
    (default: transformers' ``model.generate``); a test double replaces that one
    stage, never :meth:`run`.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        cache_size: int = 8,
        generation: Generation | None = None,
        sam: SamSegmenter | None = None,
    ) -> None:
        #: the optional SAM segmenter (:meth:`refine`, :meth:`segment`, :meth:`click`); None: Florence-2 only
        self.sam = sam
        self.model = loaded.model
        self.processor = loaded.processor
        self.model_id = loaded.model_id
        self.revision = loaded.revision
        self.device = loaded.device
        self.dtype = loaded.dtype  # None for a parse-only engine
        self.int8 = loaded.int8
        self.generation: Generation = generation or TransformersGeneration()
        self.classes = ClassRegistry()
        self.cache_size = cache_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._model_lock = threading.Lock()
        tok = self.processor.tokenizer
        #: strings a user must not be able to type into a prompt: they would steer the task syntax
        self._reserved = set(TASK_TOKENS) | set(tok.get_added_vocab()) | set(tok.all_special_tokens)
        self._reserved.discard(tok.unk_token)

    @classmethod
    def from_pretrained(
        cls,
        model: str = "base",
        *,
        revision: str | None = None,
        device: str | None = "auto",
        dtype: str | None = "auto",
        cache_size: int = 8,
        generation: Generation | None = None,
        sam: str | SamSegmenter | None = None,
    ) -> FlorenceEngine:
        """Load an alias (base, large, base-ft, large-ft), a hub id or a local directory.

        ``sam``: an optional SAM checkpoint (alias such as ``slimsam`` / ``sam-base``, hub id or folder, see
        :data:`florence_ui.model.sam.SAM_ALIASES`), read on the first refine or click, on the same device;
        a SAM that cannot load raises :class:`~florence_ui.errors.SamLoadError` then, and Florence-2 goes on.
        """
        loaded = load_model(model, revision=revision, device=device, dtype=dtype)
        if isinstance(sam, str):
            sam_dtype = "auto" if (dtype or "").lower() == "int8" else dtype  # SAM is not quantised
            sam = load_sam(sam, device=loaded.device, dtype=sam_dtype, cache_size=cache_size)
        return cls(loaded, cache_size=cache_size, generation=generation, sam=sam)

    @property
    def sam_name(self) -> str | None:
        """The SAM checkpoint this engine refines with, or None."""
        return self.sam.model_id if self.sam is not None else None

    @property
    def model_lock(self) -> threading.Lock:
        """Held around every model call; a caller running its own pass on :attr:`model` (the teaching view's
        explanation) takes it too, so the two never interleave."""
        return self._model_lock

    def release(self) -> None:
        """Drop the weights and caches (the page's model picker, before it loads another model)."""
        with self._model_lock:
            self.model = None
            self.clear_cache()
            if self.sam is not None:
                self.sam.clear_cache()
        free_accelerator_memory()

    @classmethod
    def parser_only(cls, model: str = "base", *, revision: str | None = None) -> FlorenceEngine:
        """An engine that can only :meth:`parse` (processor files, no weights): for export / push."""
        return cls(load_processor(model, revision=revision), cache_size=0)

    @property
    def can_generate(self) -> bool:
        return self.model is not None

    def _require_model(self) -> None:
        if self.model is None:
            raise InputError(f"This engine for {self.model_id} was loaded to parse only; it has no model weights.")

    # ---- description -------------------------------------------------------------
    @property
    def dtype_name(self) -> str:
        if self.model is not None and self.int8:
            return "int8 (dynamic, fp32 activations)"
        return str(self.dtype).replace("torch.", "") if self.dtype is not None else "none"

    def describe(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        return f"{self.model_id}{rev} · {self.device} · {self.dtype_name}"

    @property
    def num_image_tokens(self) -> int:
        return int(self.processor.num_image_tokens)

    # ---- prompts -----------------------------------------------------------------
    def quantize_box(self, box: Sequence[float], image_size: tuple[int, int]) -> list[int]:
        """Pixel box → 4 bins with the processor's own quantiser."""
        import torch

        tensor = torch.tensor([list(map(float, box))])
        return self.processor.post_processor.quantize(tensor, size=tuple(image_size))[0].tolist()

    def task_prompts(
        self,
        task: Task,
        text: str | None,
        boxes: Sequence[Sequence[float]] | None,
        image_size: tuple[int, int],
    ) -> tuple[list[str], list[list[float]] | None, list[str]]:
        """Task-token prompts to send, the validated boxes, and notes for the user."""
        notes: list[str] = []
        if task.needs_text:
            text = self.clean_text(text or "", notes)
            if not text:
                raise InputError(f"{task.name} needs a text prompt ({task.text_hint or 'some text'}).")
            return [f"{task.token}{text}"], None, notes
        if task.needs_boxes:
            if not boxes:
                raise InputError(f"{task.name} needs at least one box drawn on the image.")
            fixed: list[list[float]] = []
            for i, box in enumerate(boxes):
                try:
                    fix = validate_box(box, image_size)
                except BoxError as exc:
                    raise InputError(f"Box {i + 1}: {exc}") from exc
                fixed.append([round(v, 2) for v in fix.box])
                notes += [f"Box {i + 1}: {note}" for note in fix.notes]
            prompts = [f"{task.token}{loc_tokens(self.quantize_box(b, image_size))}" for b in fixed]
            return prompts, fixed, notes
        if text and text.strip():
            notes.append(f"{task.name} takes no text; the text was ignored.")
        return [task.token], None, notes

    def clean_text(self, text: str, notes: list[str]) -> str:
        """A user's text prompt, made safe to splice after a task token.

        Florence-2 reads ``<loc_N>``, task tokens and ``</s>`` typed into the text
        as real tokens (a typed ``<loc_5>`` would become a location, a typed
        ``<OD>`` would switch the task), so they are removed, with a note. Over-long
        text is refused before it reaches the tokenizer.
        """
        text = text.strip()
        cap = limits.current().max_text_chars
        if len(text) > cap:
            raise InputError(
                f"The text prompt is {len(text):,} characters; the limit is {cap:,} (FLORENCE_UI_MAX_TEXT_CHARS). "
                "Shorten it: Florence-2 grounds a sentence or a short list of phrases."
            )
        removed = sorted({m for m in _TOKEN_LIKE.findall(text) if m in self._reserved})
        if removed:
            text = _TOKEN_LIKE.sub(lambda m: " " if m.group(0) in self._reserved else m.group(0), text)
            text = " ".join(text.split())
            shown = ", ".join(removed[:5]) + (" …" if len(removed) > 5 else "")
            notes.append(f"Removed model tokens from the text ({shown}): they cannot be typed into a prompt.")
        return text

    def model_prompts(self, prompts: Sequence[str]) -> list[str]:
        """Task-token prompts → the sentences the model actually reads."""
        return self.processor._construct_prompts(list(prompts))  # noqa: SLF001 - transformers has no public form

    def text_inputs(self, prompts: Sequence[str]) -> dict[str, Any]:
        """Tokenise prompts the way the processor does, without re-processing the image.

        Matches ``processor(text=prompt, images=image)["input_ids"]`` exactly (a
        test holds us to that) but costs no image resize per box.
        """
        tok = self.processor.tokenizer
        image_part = self.processor.image_token * self.num_image_tokens
        full = [image_part + tok.bos_token + p + tok.eos_token for p in self.model_prompts(prompts)]
        enc = tok(full, add_special_tokens=False, padding=True, return_tensors="pt")
        limit = self.max_prompt_tokens
        if limit is not None and enc["input_ids"].shape[1] > limit:
            text_tokens = enc["input_ids"].shape[1] - self.num_image_tokens
            raise InputError(
                f"The prompt is {text_tokens} text tokens; with the image's {self.num_image_tokens} tokens that is "
                f"more than the {limit} positions Florence-2 can read. Shorten the text."
            )
        return enc

    @property
    def max_prompt_tokens(self) -> int | None:
        """Encoder positions (image + text tokens), from the model's config; None for a parse-only engine."""
        if self.model is None:
            return None
        config = getattr(self.model.config, "text_config", self.model.config)
        return int(getattr(config, "max_position_embeddings", 0)) or None

    # ---- the pipeline: prepare → image features → generate → finish -------------------
    def settings_for(
        self, settings: GenerationSettings | None, max_new_tokens: int | None = None, num_beams: int | None = None
    ) -> GenerationSettings:
        """``settings`` with the per-call overrides applied, checked (InputError when out of range)."""
        settings = settings or GenerationSettings()
        return GenerationSettings(
            max_new_tokens if max_new_tokens is not None else settings.max_new_tokens,
            num_beams if num_beams is not None else settings.num_beams,
        ).checked()

    def prepare(
        self,
        image: Image.Image,
        task: str,
        text: str | None = None,
        boxes: Sequence[Sequence[float]] | None = None,
        *,
        settings: GenerationSettings | None = None,
        max_new_tokens: int | None = None,
        num_beams: int | None = None,
        features: torch.Tensor | None = None,
    ) -> PreparedRequest:
        """Validate one request and build its prompts; an :class:`InputError` concerns this request only.

        Everything a request can get wrong is found here (unknown task, missing
        text or boxes, bad boxes, settings out of range, a prompt longer than the
        encoder reads), so :meth:`generate` on prepared requests fails only for
        model reasons. ``features``: this image's projected features, already
        computed (the batch runner shares one vision call across tasks).
        """
        spec = get_task(task)
        self._require_model()
        if not isinstance(image, Image.Image):
            raise InputError("The image must be a PIL image.")
        settings = self.settings_for(settings, max_new_tokens, num_beams)
        image = image.convert("RGB") if image.mode != "RGB" else image
        prompts, fixed, notes = self.task_prompts(spec, text, boxes, image.size)
        self.text_inputs(prompts)  # the encoder-length check, for this request alone
        return PreparedRequest(
            spec=spec,
            image=image,
            text=text,
            prompts=tuple(prompts),
            boxes=tuple(tuple(b) for b in fixed) if fixed is not None else None,
            notes=tuple(notes),
            settings=settings,
            features=features,
        )

    def pixel_values(self, image: Image.Image | Sequence[Image.Image]) -> torch.Tensor:
        values = self.processor.image_processor(images=image, return_tensors="pt")["pixel_values"]
        return values.to(self.device, self.dtype)

    def image_features(self, images: Sequence[Image.Image], *, use_cache: bool = True) -> list[ImageFeatures]:
        """Projected features ``(1, tokens, dim)`` for each image, the misses in one vision-tower call.

        With ``use_cache`` a hit skips the vision tower and a miss is remembered
        (LRU, ``cache_size`` images); the model lock is held only for the call.
        """
        import torch

        self._require_model()
        keys = [f"{self.model_id}:{image_key(image)}" for image in images]
        found: dict[str, ImageFeatures] = {}
        if use_cache:
            with self._cache_lock:
                for key in keys:
                    if key in self._cache:
                        self._cache.move_to_end(key)
                        found[key] = ImageFeatures(self._cache[key], True)
        todo = {key: image for key, image in zip(keys, images, strict=True) if key not in found}
        if todo:
            pixels = self.pixel_values(list(todo.values()))
            with self._model_lock, torch.inference_mode():
                stacked = self.model.get_image_features(pixel_values=pixels).pooler_output
            fresh = {key: stacked[i : i + 1] for i, key in enumerate(todo)}
            found |= {key: ImageFeatures(value, False) for key, value in fresh.items()}
            if use_cache and self.cache_size > 0:
                with self._cache_lock:
                    for key, value in fresh.items():
                        self._cache[key] = value
                    while len(self._cache) > self.cache_size:
                        self._cache.popitem(last=False)
        return [found[key] for key in keys]

    def clear_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    def generate(
        self,
        requests: Sequence[PreparedRequest],
        *,
        use_cache: bool = True,
        time_limit: float | None = None,
        on_step: StepCallback | None = None,
    ) -> list[FlorenceResult]:
        """Answer prepared requests: all their rows in one ``generate``, each result finished once.

        Requests with different settings go in one call per settings (decoding
        knobs are per call), in the order given; results come back in that order.
        ``time_limit`` (seconds) caps each call below the operator's
        ``FLORENCE_UI_REQUEST_TIMEOUT``: a host with its own hard deadline (a
        ZeroGPU slot) passes it, so a long answer ends as "stopped at the time
        limit" instead of being killed by the platform. ``on_step``: the generation
        stage's per-step callback (see :data:`~florence_ui.model.generation.StepCallback`).
        """
        self._require_model()
        groups: dict[GenerationSettings, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(request.settings, []).append(i)
        results: dict[int, FlorenceResult] = {}
        for settings, indices in groups.items():
            group = [requests[i] for i in indices]
            answered = self._generate(group, settings, use_cache, time_limit, on_step)
            results |= dict(zip(indices, answered, strict=True))
        return [results[i] for i in range(len(requests))]

    def run(
        self,
        image: Image.Image,
        task: str,
        text: str | None = None,
        boxes: Sequence[Sequence[float]] | None = None,
        *,
        settings: GenerationSettings | None = None,
        max_new_tokens: int | None = None,
        num_beams: int | None = None,
        use_cache: bool = True,
        tile: bool = False,
        time_limit: float | None = None,
        on_token: Callable[[int, int], None] | None = None,
        refine: bool = False,
        **tile_options: Any,
    ) -> FlorenceResult:
        """Ask Florence-2 one task about one image (N boxes → one batched call): prepare + generate.

        ``refine``: every box of the answer becomes a SAM mask (:meth:`refine`; needs ``sam=``).

        ``time_limit``: see :meth:`generate`. ``tile``: the dense-scene mode of
        :func:`florence_ui.model.tiling.run_tiled` (detection tasks only).
        ``on_token(done, max_new_tokens)``: called once per decoding step (a
        progress bar); the answer may end before ``done`` reaches the maximum.
        """
        started = time.perf_counter()
        if refine:
            self.require_sam()  # before the model runs: a missing SAM is an input error, not a wasted answer
        if tile:
            image, tiled = self._tiled(image, task, text, settings, max_new_tokens, num_beams, time_limit, tile_options)
            result = tiled()
            return self.refine(result, image) if refine else result
        request = self.prepare(
            image, task, text, boxes, settings=settings, max_new_tokens=max_new_tokens, num_beams=num_beams
        )
        step = (lambda done, most, _leading: on_token(done, most)) if on_token is not None else None
        [result] = self.generate([request], use_cache=use_cache, time_limit=time_limit, on_step=step)
        if on_token is not None:  # the last step, so a progress bar ends full
            on_token(max((len(row) for row in result.output_tokens or []), default=0), request.settings.max_new_tokens)
        if refine:
            result = self.refine(result, request.image)
        result.timings["total_s"] = time.perf_counter() - started  # preparing included
        return result

    # ---- SAM: masks from boxes and clicks ---------------------------------------------
    def require_sam(self) -> SamSegmenter:
        """The SAM segmenter, or the InputError that says how to get one."""
        if self.sam is None:
            raise InputError(
                "No SAM segmenter: load one with FlorenceEngine.from_pretrained(..., sam='slimsam') "
                "(or start the app / CLI with --sam MODEL) to refine masks or segment clicks."
            )
        return self.sam

    def refine(self, result: FlorenceResult, image: Image.Image, *, use_cache: bool = True) -> FlorenceResult:
        """``result`` with a SAM mask for every box, in one decoder call (see :func:`~florence_ui.model.refine.refine_result`)."""
        image = image.convert("RGB") if isinstance(image, Image.Image) and image.mode != "RGB" else image
        return refine_result(result, image, self.require_sam(), use_cache=use_cache)

    def segment(
        self,
        image: Image.Image,
        points: Sequence[Sequence[float]] | None = None,
        boxes: Sequence[Sequence[float]] | None = None,
        point_labels: Sequence[int] | None = None,
        *,
        use_cache: bool = True,
    ) -> sv.Detections:
        """SAM only: masks for clicked ``points`` (1 positive, 0 negative) and/or ``boxes`` (``sv.Detections``)."""
        if not isinstance(image, Image.Image):
            raise InputError("The image must be a PIL image.")
        image = image.convert("RGB") if image.mode != "RGB" else image
        return self.require_sam().segment(image, points=points, boxes=boxes, point_labels=point_labels,
                                          use_cache=use_cache)  # fmt: skip

    def click(
        self,
        image: Image.Image,
        points: Sequence[Sequence[float]],
        point_labels: Sequence[int] | None = None,
        task: str | Task = CLICK_TASK,
        **run_options: Any,
    ) -> FlorenceResult:
        """One click = one labelled object: SAM's mask → its box → Florence-2's region task, all clicks at once."""
        if not isinstance(image, Image.Image):
            raise InputError("The image must be a PIL image.")
        image = image.convert("RGB") if image.mode != "RGB" else image
        return click_objects(self, self.require_sam(), image, points, point_labels, task, **run_options)

    def stream(
        self,
        image: Image.Image,
        task: str,
        text: str | None = None,
        boxes: Sequence[Sequence[float]] | None = None,
        *,
        settings: GenerationSettings | None = None,
        max_new_tokens: int | None = None,
        num_beams: int | None = None,
        use_cache: bool = True,
        tile: bool = False,
        time_limit: float | None = None,
        **tile_options: Any,
    ) -> Iterator[StreamEvent]:
        """:meth:`run` as it happens: :class:`StreamEvent`\\ s while the answer is generated, the result last.

        The request is checked here, before anything runs (an :class:`InputError`
        at the call, not mid-stream); see :func:`florence_ui.model.streaming.stream`.
        """
        if tile:
            _, tiled = self._tiled(image, task, text, settings, max_new_tokens, num_beams, time_limit, tile_options)
            return stream_tiled(tiled)
        request = self.prepare(
            image, task, text, boxes, settings=settings, max_new_tokens=max_new_tokens, num_beams=num_beams
        )
        return stream_request(self, request, use_cache=use_cache, time_limit=time_limit)

    def _tiled(
        self,
        image: Image.Image,
        task: str,
        text: str | None,
        settings: GenerationSettings | None,
        max_new_tokens: int | None,
        num_beams: int | None,
        time_limit: float | None,
        tile_options: dict[str, Any],
    ) -> tuple[Image.Image, Callable[[], FlorenceResult]]:
        """A tiled request checked now (run and stream fail before any work), as the RGB image and the call to make."""
        spec = get_task(task)
        self._require_model()
        if not isinstance(image, Image.Image):
            raise InputError("The image must be a PIL image.")
        settings = self.settings_for(settings, max_new_tokens, num_beams)
        image = image.convert("RGB") if image.mode != "RGB" else image

        def call() -> FlorenceResult:
            return run_tiled(self, image, spec.token, text, settings=settings, time_limit=time_limit, **tile_options)

        return image, call

    def run_texts(
        self,
        image: Image.Image,
        task: str,
        texts: Sequence[str],
        *,
        settings: GenerationSettings | None = None,
        use_cache: bool = True,
        time_limit: float | None = None,
        cap: int | None = None,
    ) -> list[FlorenceResult]:
        """Ask one text task (open-vocabulary detection, grounding) once per text, sharing one vision call.

        Detecting a label set asks "where is a car? a person? a bike?" of one
        image: as N :meth:`run` calls that is N ``generate`` calls, and N vision
        passes when the cache is off or full. Here the image's features are
        computed once and every text is one row of one ``generate`` (like the N
        boxes of a region task). Returns one result per text that ran, in the
        order given, each with ``text_input`` = its text (whitespace collapsed)
        and, as labels, the phrases Florence-2 answered with.

        Empty texts and repeats (ignoring case and spacing) are dropped; with
        ``cap`` (a web request passes ``limits.current().max_boxes``) only the
        first ``cap`` texts run; a text :meth:`prepare` refuses (too long) is
        skipped. Each says so in a note at the front of the first result's
        ``notes``. No text left, a task without text, or no image: InputError.
        """
        started = time.perf_counter()
        try:
            spec = get_task(task)
        except ValueError as exc:  # get_task's own sentence, as the tree's InputError
            raise InputError(str(exc)) from exc
        if not spec.needs_text:
            raise InputError(
                f"{spec.name} takes no text prompt, so it cannot run once per text: pick a text task such as "
                "open-vocabulary detection or phrase grounding."
            )
        self._require_model()
        if not isinstance(image, Image.Image):
            raise InputError("The image must be a PIL image.")
        if isinstance(texts, str):  # a bare string would otherwise become one prompt per character
            texts = [texts]
        notes: list[str] = []
        kept: list[str] = []
        seen: set[str] = set()
        empty, repeated = 0, []
        for text in texts:
            if not isinstance(text, str):
                raise InputError(f"Each text must be a string, got {type(text).__name__}: pass the class names.")
            clean = " ".join(text.split())
            if not clean:
                empty += 1
            elif clean.casefold() in seen:
                repeated.append(clean)
            else:
                seen.add(clean.casefold())
                kept.append(clean)
        if empty:
            notes.append(f"{empty} empty text{'s were' if empty != 1 else ' was'} dropped.")
        if repeated:
            shown = ", ".join(repr(t) for t in repeated[:5]) + (" …" if len(repeated) > 5 else "")
            notes.append(f"Repeated texts were asked once ({shown}).")
        if cap is not None and len(kept) > max(1, int(cap)):
            cap = max(1, int(cap))
            notes.append(
                f"{len(kept)} texts were given; only the first {cap} were run (the per-request limit, "
                "FLORENCE_UI_MAX_BOXES). Run the rest in another request."
            )
            kept = kept[:cap]
        settings = self.settings_for(settings)
        image = image.convert("RGB") if image.mode != "RGB" else image  # as prepare does: the same cache key
        requests: list[PreparedRequest] = []
        for text in kept:
            try:
                requests.append(self.prepare(image, spec.token, text, settings=settings))
            except InputError as exc:
                notes.append(f"{text!r} was not asked: {exc}")
        if not requests:
            raise InputError(
                f"{spec.name} needs at least one text to look for ({spec.text_hint or 'e.g. a class name'})."
                + (" " + " ".join(notes) if notes else "")
            )
        t0 = time.perf_counter()
        [got] = self.image_features([image], use_cache=use_cache)
        vision_s = time.perf_counter() - t0
        shared = [replace(request, features=got.features) for request in requests]
        results = self.generate(shared, use_cache=use_cache, time_limit=time_limit)
        for result in results:
            result.cached_features = got.cached  # generate saw features given, not whether they were cached
            result.timings["vision_s"] = vision_s
            result.timings["total_s"] = time.perf_counter() - started
        results[0].notes[:0] = notes
        return results

    def parse(
        self,
        task: str,
        generated_text: str | Sequence[str],
        image_size: tuple[int, int],
        text: str | None = None,
        boxes: Sequence[Sequence[float]] | None = None,
    ) -> FlorenceResult:
        """Parse text some Florence-2 run produced, with no model call (confidence = NaN).

        ``generated_text`` is one string, or one per box for region tasks with
        ``boxes``. A region task without boxes takes its box from the ``<loc_N>``
        tokens of ``text`` (as Florence-2's own prompts carry it) or of the answer.
        """
        spec = get_task(task)
        texts = _answers(generated_text, spec)
        size = _image_size(image_size)
        if spec.needs_boxes and boxes is not None and len(boxes) != len(texts):
            raise InputError(f"{len(boxes)} boxes but {len(texts)} generated texts: one answer per box is needed.")
        fixed = None
        if boxes is not None:
            fixed = []
            for i, box in enumerate(boxes):
                try:
                    fixed.append(list(validate_box(box, size).box))
                except BoxError as exc:
                    raise InputError(f"Box {i + 1}: {exc}") from exc
        result = self._assemble(spec, texts, None, size, text, fixed)
        result.raw = generated_text if isinstance(generated_text, str) else list(generated_text)
        return result

    # ---- internals -----------------------------------------------------------------
    def _time_limit(self, time_limit: float | None) -> tuple[float, str]:
        """The seconds one generate may run, and the name of the limit the user can change."""
        timeout, limit_name = limits.current().request_timeout_s, "FLORENCE_UI_REQUEST_TIMEOUT"
        if time_limit is not None and float(time_limit) < timeout:
            timeout, limit_name = max(1.0, float(time_limit)), "the host's slot, e.g. a ZeroGPU call"
        return timeout, limit_name

    def _generate(
        self,
        requests: list[PreparedRequest],
        settings: GenerationSettings,
        use_cache: bool,
        time_limit: float | None,
        on_step: StepCallback | None = None,
    ) -> list[FlorenceResult]:
        """One generate call for ``requests`` (equal settings), then each result finished."""
        import torch

        started = time.perf_counter()
        timeout, limit_name = self._time_limit(time_limit)
        prompts = [p for request in requests for p in request.prompts]
        enc = self.text_inputs(prompts).to(self.device)
        prompt_tokens = [int(v) for v in enc["attention_mask"].sum(dim=1).tolist()]
        needed = [request.image for request in requests if request.features is None]
        computed = iter(self.image_features(needed, use_cache=use_cache)) if needed else iter(())
        per_request = [
            ImageFeatures(request.features, False) if request.features is not None else next(computed)
            for request in requests
        ]
        rows = torch.cat(
            [got.features.expand(request.rows, -1, -1) for got, request in zip(per_request, requests, strict=True)]
        )
        vision_s = time.perf_counter() - started
        batch = GenerationInput(
            tuple(requests), enc["input_ids"], enc["attention_mask"], rows, settings, timeout, on_step
        )
        t1 = time.perf_counter()
        with self._model_lock, torch.inference_mode():
            out = self.generation(self.model, batch)
        generate_s = time.perf_counter() - t1
        results = []
        for request, got, span in zip(requests, per_request, rows_of(requests), strict=True):
            decoded = self._decode(out, span, settings.max_new_tokens)
            timings = {"vision_s": vision_s, "generate_s": generate_s}
            result = self._finish(request, decoded, prompt_tokens[span], timings, got.cached, timeout, limit_name)
            result.timings["total_s"] = time.perf_counter() - started
            results.append(result)
        return results

    def _decode(self, out: GenerationOutput, rows: slice, max_new_tokens: int) -> _Decoded:
        """Token ids → texts, (token, probability) pieces, lengths, and whether any answer was cut off.

        BART force-emits the end token at the length limit (``forced_eos_token_id``),
        so "cut off" means the answer filled all ``max_new_tokens`` positions, not
        merely that an end token is missing (unless the stage says so itself).
        """
        tok = self.processor.tokenizer
        sequences = out.sequences[rows]
        texts = self.processor.batch_decode(sequences, skip_special_tokens=False)
        eos = tok.eos_token_id
        all_pieces, all_ids, lengths, truncated = [], [], [], False
        probs = out.transition_scores[rows].float().exp().cpu().numpy()
        for i, seq in enumerate(sequences.tolist()):
            body = seq[1:]  # position 0 is the decoder start token
            ended = eos in body
            stop = body.index(eos) + 1 if ended else len(body)
            truncated |= stop >= max_new_tokens if out.cut_off is None else out.cut_off[rows.start + i]
            ids = body[:stop]
            # an id the tokenizer does not know (mismatched vocab) decodes to None: show it as <unk>
            tokens = [t if t is not None else tok.unk_token for t in tok.convert_ids_to_tokens(ids)]
            row = [float(p) if np.isfinite(p) else math.nan for p in probs[i][: len(ids)]]
            row += [math.nan] * (len(ids) - len(row))
            all_pieces.append(list(zip(tokens, row, strict=True)))
            all_ids.append(ids)
            lengths.append(sum(1 for t in tokens if t not in SPECIAL_PIECES))
            texts[i] = texts[i].replace(tok.pad_token, "") if tok.pad_token else texts[i]
        return _Decoded(texts, all_pieces, all_ids, lengths, truncated)

    def _finish(
        self,
        request: PreparedRequest,
        decoded: _Decoded,
        prompt_tokens: list[int],
        timings: dict[str, float],
        cached: bool,
        timeout: float,
        limit_name: str,
    ) -> FlorenceResult:
        """The one place a generated answer becomes a complete :class:`FlorenceResult`."""
        boxes = [list(b) for b in request.boxes] if request.boxes is not None else None
        result = self._assemble(request.spec, decoded.texts, decoded.pieces, request.size, request.text, boxes)
        result.prompts, result.model_prompts = list(request.prompts), self.model_prompts(request.prompts)
        result.prompt_tokens, result.generated_tokens = prompt_tokens, decoded.lengths
        result.truncated, result.cached_features, result.notes = decoded.truncated, cached, list(request.notes)
        result.output_tokens = [
            [(int(i), str(t), None if math.isnan(p) else round(p, 6)) for i, (t, p) in zip(row_ids, row, strict=True)]
            for row_ids, row in zip(decoded.ids, decoded.pieces, strict=True)
        ]
        result.timings = dict(timings)
        if timings["generate_s"] >= timeout and not decoded.truncated:
            result.truncated = True
            result.notes.append(
                f"The answer was stopped at the {timeout:g} s time limit ({limit_name}): some regions may be missing."
            )
        elif decoded.truncated:
            result.notes.append(
                f"The answer was cut off at max_new_tokens={request.settings.max_new_tokens}: "
                "some regions may be missing."
            )
        return result

    def _assemble(self, spec: Task, texts, pieces, size, text_input, boxes) -> FlorenceResult:
        registry = self.classes
        if spec.needs_boxes:
            parts = []
            prompt_boxes = boxes or [text_input_box(text_input, size)] * len(texts)
            for i, raw in enumerate(texts):
                box = prompt_boxes[i] if boxes else None
                parsed = parse_one(
                    self.processor,
                    spec.token,
                    raw,
                    size,
                    registry=registry,
                    pieces=pieces[i] if pieces else None,
                    text_input=text_input,
                    prompt_box=box,
                )
                parts.append(parsed.detections)
            if all(b is not None for b in prompt_boxes):
                det = merge_rows_per_box(parts, prompt_boxes, size, spec.token)
            else:
                det = sv.Detections.merge(parts)
            result = FlorenceResult(spec.token, det, None, texts if boxes else texts[0], size, text_input, boxes)
        else:
            parsed = parse_one(
                self.processor,
                spec.token,
                texts[0],
                size,
                registry=registry,
                pieces=pieces[0] if pieces else None,
                text_input=text_input,
            )
            result = FlorenceResult(spec.token, parsed.detections, parsed.text, texts[0], size, text_input, None)
            result.text_score = parsed.text_score
        result.model, result.revision = self.model_id, self.revision
        if spec.output is OutputKind.TEXT and result.text is None:
            result.text = ""
        return result
