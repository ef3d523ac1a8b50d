"""Streaming: an answer reaches the page token by token, and the finished result arrives last.

A caption of 60 tokens takes seconds on a CPU; a person watching an empty box
for that long thinks the app hung. :func:`stream_request` runs one prepared
request through the engine's ordinary ``generate`` (so the final result is the
one ``run`` returns, model lock and time limit included) on a worker thread and
hands the consumer a :class:`StreamEvent` per decoding step: each row's answer
so far, its token ids, and for box tasks the boxes whose four ``<loc_N>`` tokens
are complete.

The steps come from the generation stage's ``on_step`` callback
(:class:`~florence_ui.model.generation.StepHook`, a logits processor that
changes nothing), which works for greedy search and beam search alike;
transformers' own streamer refuses beam search. With beams the text shown is the
*leading* beam so far, which a later step may replace by another beam (the text
can then change, not only grow); with one beam it only grows. The consumer
never waits on decoding: a slow page skips to the latest step.

Closing the iterator early (the person left) stops the generation at its next
step and frees the model. Nothing here imports the engine (the engine imports
this module).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import supervision as sv

from florence_ui.core.result import FlorenceResult
from florence_ui.core.tasks import OutputKind
from florence_ui.errors import FlorenceUIError
from florence_ui.model.generation import PreparedRequest

__all__ = ["StreamEvent", "StreamingEngine", "stream_request", "stream_tiled"]


@dataclass(frozen=True)
class StreamEvent:
    """One step of a streamed answer; the last event carries the finished ``result``.

    ``texts``: each row's answer so far (one row, or one per box for region
    tasks), decoded without special tokens, ``<loc_N>`` tokens kept.
    ``detections``: the boxes / regions parsed from the complete ``<loc_N>``
    groups so far (None for text answers, or before the first group completes).
    ``elapsed_s``: seconds since the stream started.
    """

    step: int
    max_steps: int
    texts: tuple[str, ...]
    token_ids: tuple[tuple[int, ...], ...]
    detections: sv.Detections | None
    elapsed_s: float
    result: FlorenceResult | None = None

    @property
    def done(self) -> bool:
        return self.result is not None


class StreamingEngine(Protocol):
    """What streaming needs of an engine: the processor, ``generate`` and ``parse``."""

    processor: Any

    def generate(
        self, requests: Sequence[PreparedRequest], *, use_cache: bool = True, time_limit: float | None = None,
        on_step: Any = None,
    ) -> list[FlorenceResult]: ...  # fmt: skip

    def parse(self, task: str, generated_text: Any, image_size: tuple[int, int], text: str | None = None,
              boxes: Any = None) -> FlorenceResult: ...  # fmt: skip


class _Stopped(FlorenceUIError):
    """Raised inside the generation by the step hook when the consumer closed the stream (never escapes)."""


_DONE = object()


def stream_request(
    engine: StreamingEngine, request: PreparedRequest, *, use_cache: bool = True, time_limit: float | None = None
) -> Iterator[StreamEvent]:
    """Events for one prepared request while ``engine.generate`` answers it; the last one holds the result.

    An error of the generation itself is raised from the iterator after the
    events so far. ``FlorenceEngine.stream`` is the way in (it prepares the request,
    so bad input fails at the call).
    """
    return _events(engine, request, use_cache, time_limit)


def stream_tiled(run: Callable[[], FlorenceResult]) -> Iterator[StreamEvent]:
    """Tiled mode as a stream: its batched generate cannot say which tile leads, so one final event."""
    started = time.perf_counter()

    def events() -> Iterator[StreamEvent]:
        result = run()
        texts = tuple(result.raw_list)
        yield StreamEvent(0, 0, texts, (), result.detections, time.perf_counter() - started, result)

    return events()


def _loc_ids(processor: Any) -> frozenset[int]:
    tok = processor.tokenizer
    ids = tok.convert_tokens_to_ids([f"<loc_{i}>" for i in range(1000)])
    return frozenset(i for i in ids if i is not None and i != tok.unk_token_id)


def _events(
    engine: StreamingEngine, request: PreparedRequest, use_cache: bool, time_limit: float | None
) -> Iterator[StreamEvent]:
    started = time.perf_counter()
    steps: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()
    outcome: dict[str, Any] = {}

    def on_step(step: int, max_steps: int, leading: Any) -> None:
        if stop.is_set():
            raise _Stopped("the stream was closed")
        steps.put((step, max_steps, leading[:, 1:].tolist()))

    def work() -> None:
        try:
            [outcome["result"]] = engine.generate([request], use_cache=use_cache, time_limit=time_limit,
                                                  on_step=on_step)  # fmt: skip
        except _Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            outcome["error"] = exc
        finally:
            steps.put(_DONE)

    worker = threading.Thread(target=work, name="florence-stream", daemon=True)
    worker.start()
    tok = engine.processor.tokenizer
    locs = _loc_ids(engine.processor) if request.spec.output is not OutputKind.TEXT else frozenset()
    groups, detections = -1, None
    try:
        finished = False
        while not finished:
            item = steps.get()
            if item is _DONE:
                break
            while True:  # the page is behind: skip to the latest step
                try:
                    nxt = steps.get_nowait()
                except queue.Empty:
                    break
                if nxt is _DONE:
                    finished = True
                    break
                item = nxt
            step, max_steps, rows = item
            texts = tuple(tok.batch_decode(rows, skip_special_tokens=True))
            if locs:
                complete = sum(sum(1 for i in row if i in locs) // 4 for row in rows)
                if complete != groups:
                    groups, detections = complete, _partial(engine, request, texts) if complete else None
            ids = tuple(tuple(row) for row in rows)
            yield StreamEvent(step, max_steps, texts, ids, detections, time.perf_counter() - started)
        worker.join()
        if "error" in outcome:
            raise outcome["error"]
        result: FlorenceResult = outcome["result"]
        texts = tuple(result.raw_list)
        ids = tuple(tuple(i for i, _, _ in row) for row in result.output_tokens or [])
        last = max((len(row) for row in ids), default=0)
        yield StreamEvent(last, request.settings.max_new_tokens, texts, ids, result.detections,
                          time.perf_counter() - started, result)  # fmt: skip
    finally:
        stop.set()


def _partial(engine: StreamingEngine, request: PreparedRequest, texts: tuple[str, ...]) -> sv.Detections | None:
    """The regions of an unfinished answer (the parser reads complete ``<loc_N>`` groups only)."""
    boxes = [list(b) for b in request.boxes] if request.boxes is not None else None
    answer: Any = list(texts) if boxes else texts[0]
    try:
        return engine.parse(request.spec.token, answer, request.size, request.text, boxes).detections
    except Exception:  # noqa: BLE001 - half an answer may not parse yet; the next group will
        return None
