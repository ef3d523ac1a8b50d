"""The Florence-2 tasks as MCP tools, for agents (issue 18): typed functions served by gradio's own MCP server.

Why this module: an agent (Claude Desktop, Cursor, an SDK client) should call
"detect the objects in this image" as a tool with typed parameters and get pixel
boxes back, not drive the page. Gradio already is an MCP server (``gradio[mcp]``,
``demo.launch(mcp_server=True)``): every *public* API endpoint of the app becomes a
tool whose name is the function's name, whose description and parameter texts are
its docstring (the ``Args:`` section) and whose input schema comes from its type
hints (``gr.api``). :class:`FlorenceTools` holds the tool functions over one shared
engine; :func:`register_mcp_tools` adds them to a built page and returns the launch
options that serve them.

Only these tools are served over MCP. The page's documented HTTP API (``run_task``,
``review``, ``workspace_open``, ``labelstudio_*`` ...) is public for
``gradio_client`` too, and gradio would list every one of them as a tool (with a
``gr.State`` it cannot keep between calls). The lifespan returned by
:func:`register_mcp_tools` keeps the MCP server's tool table to this module's
endpoints when the server starts, before it answers anyone: an MCP client can
neither list nor call the others (the HTTP API is unchanged).

Images: gradio turns the tool's file parameter into a string an agent can fill, an
``http(s)://`` URL (gradio downloads it, refusing private addresses) or a
``data:image/png;base64,...`` URL, and hands the function the uploaded copy in its
cache; :func:`florence_ui.core.images.open_image` then opens it with the app's limits
(``FLORENCE_UI_MAX_PIXELS``, EXIF orientation) and explains every bad file. Boxes
are capped at ``FLORENCE_UI_MAX_BOXES`` and class lists at the same number, as on
the page. A bad input raises ``gr.Error`` with the app's own sentence, which the
MCP client receives as the tool's error text.

Answers are JSON objects (sent as JSON text): the image size in pixels and one
entry per region with its ``box`` ``[x1, y1, x2, y2]`` in pixels of the image as
sent, its ``label`` and its ``confidence`` (0..1 from Florence-2's own token
probabilities), plus ``polygons`` (segmentation), ``quad`` (OCR lines) or
``prompt_box`` (the box a region answer belongs to) where they apply.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import typing
import warnings
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import gradio as gr
from gradio.data_classes import FileData
from PIL import Image

from florence_ui.core import limits
from florence_ui.core.fields import POLYGONS, PROMPT_BOX, SAM_POLYGONS, SAM_SCORE
from florence_ui.core.images import ImageLoadError, open_image
from florence_ui.core.result import FlorenceResult
from florence_ui.core.tasks import (
    DESCRIBE_REGION_TASK,
    DETECT_TASK,
    GROUNDING_TASK,
    NAME_REGION_TASK,
    OBJECTS_TASK,
    OCR_REGIONS_TASK,
    REFERRING_SEGMENT_TASK,
    REGION_SEGMENT_TASK,
    TASKS,
    Task,
    get_task,
)
from florence_ui.errors import FlorenceUIError
from florence_ui.model.engine import FlorenceEngine, GenerationSettings, InputError
from florence_ui.ui.api import parse_boxes

#: the MCP tools, in the order clients list them (each is a :class:`FlorenceTools` method and an API endpoint)
TOOL_NAMES: tuple[str, ...] = (
    "detect",
    "detect_classes",
    "ground_phrase",
    "describe_regions",
    "categorise_regions",
    "segment",
    "segment_regions",
    "ocr_with_regions",
    "caption",
)
#: the caption tool's ``detail`` values, shortest first (the table's caption rows, in its order)
CAPTION_DETAILS: tuple[str, ...] = ("brief", "detailed", "paragraph")
#: a region entry's OCR quadrilateral (the key :meth:`FlorenceResult.regions` writes)
QUAD = "quad"
#: what an agent is told when the image is missing
NO_IMAGE = ("No image: pass the image as an http(s) URL of an image file or as a data URL "
            "(data:image/png;base64,...).")  # fmt: skip


#: caption detail → task: the table's caption rows, shortest first
CAPTION_TASKS: dict[str, Task] = dict(zip(CAPTION_DETAILS, (t for t in TASKS if t.is_caption), strict=False))


def _error(exc: Exception) -> gr.Error:
    return gr.Error(str(exc), title="Florence-2 UI")


def _image_source(image: Any) -> tuple[Any, str | None]:
    """What gradio hands a file parameter (a FileData dict, a FileData, a path) → (path or image, its name)."""
    if isinstance(image, FileData):
        return image.path, image.orig_name
    if isinstance(image, dict):
        return image.get("path"), image.get("orig_name")
    if isinstance(image, Path):
        return str(image), image.name
    return image, None


def region_entry(row: dict[str, Any]) -> dict[str, Any]:
    """One region of :meth:`FlorenceResult.regions` as a tool answers it: box, label, confidence and its geometry."""
    entry = {"label": row["label"], "confidence": row["confidence"], "box": row["box"]}
    for key in (PROMPT_BOX, QUAD, POLYGONS, SAM_POLYGONS, SAM_SCORE):
        if key in row:
            entry[key] = row[key]
    return entry


def tool_answer(tool: str, result: FlorenceResult | Sequence[FlorenceResult], model: str) -> dict[str, Any]:
    """A tool's JSON answer from one result, or from one result per query (``detect_classes``, in the order asked:
    each region then names its ``query``)."""
    per_query = not isinstance(result, FlorenceResult)
    results = list(result) if per_query else [result]
    if not results:
        raise InputError("No query ran: pass at least one class name.")
    first = results[0]
    regions: list[dict[str, Any]] = []
    for each in results:
        for row in each.regions():
            entry = region_entry(row)
            if per_query:
                entry["query"] = each.text_input  # the class this region answers
            regions.append(entry)
    return {
        "tool": tool,
        "task": get_task(first.task).name,
        "image_size": [int(v) for v in first.image_size],
        "text": first.text,
        "count": len(regions),
        "regions": regions,
        "truncated": any(r.truncated for r in results),
        "notes": [note for r in results for note in r.notes],
        "model": model,
    }


class FlorenceTools:
    """The MCP tools over one shared engine; each method is one tool (plain values in, a JSON-ready dict out).

    The methods are what :func:`register_mcp_tools` serves (their names, docstrings and type hints are the tools'
    names, descriptions and schemas) and what a Python caller can use directly.
    """

    def __init__(self, engine: FlorenceEngine, settings: GenerationSettings | None = None) -> None:
        self.engine = engine
        self.settings = (settings or GenerationSettings()).checked()

    # ---- the doors every tool goes through ----------------------------------------------------------
    def _image(self, image: Any) -> Image.Image:
        source, name = _image_source(image)
        if source is None or (isinstance(source, str) and not source.strip()):
            raise InputError(NO_IMAGE)
        return open_image(source, name=f"'{name}'" if name else None)

    def _run(self, tool: str, image: Any, task: Task, text: str | None = None, boxes: Any = None) -> dict[str, Any]:
        try:
            picture = self._image(image)
            notes: list[str] = []
            if task.needs_text and not (text or "").strip():
                raise InputError(f"{tool} needs a text prompt, e.g. “{task.text_hint}”.")
            parsed = None
            if task.needs_boxes:
                parsed = parse_boxes(boxes)
                if not parsed:
                    raise InputError(f"{tool} needs at least one box [x1, y1, x2, y2] in pixels of the image.")
                cap = limits.current().max_boxes
                if len(parsed) > cap:
                    notes.append(f"{len(parsed)} boxes were given; only the first {cap} were run (the per-request "
                                 "limit, FLORENCE_UI_MAX_BOXES). Send the rest in another call.")  # fmt: skip
                    parsed = parsed[:cap]
            # segmentation on a server with SAM (--sam): SAM's pixel outline and score beside Florence-2's polygon
            refine = task in (REFERRING_SEGMENT_TASK, REGION_SEGMENT_TASK) and getattr(self.engine, "sam", None)
            extra = {"refine": True} if refine else {}
            result = self.engine.run(picture, task.token, text if task.needs_text else None, parsed,
                                     settings=self.settings, **extra)  # fmt: skip
        except (InputError, ImageLoadError, FlorenceUIError, ValueError, TypeError) as exc:
            raise _error(exc) from exc
        result.notes[:0] = notes
        return tool_answer(tool, result, self.engine.model_id)

    # ---- the tools (docstrings: the description and Args the MCP client shows) -------------------------
    def detect(self, image: FileData) -> dict[str, Any]:
        """Detect the objects in an image with Florence-2 (object detection, COCO-like categories).

        Args:
            image: the image, as an http(s) URL of an image file or a data URL (data:image/png;base64,...).

        Returns:
            A JSON object: image_size [width, height] in pixels and regions, one per object, each with box
            [x1, y1, x2, y2] in pixels of the image as sent, label (the category) and confidence (0..1, from the
            model's token probabilities; null when unavailable); count, notes and truncated (answer cut off).
        """
        return self._run("detect", image, OBJECTS_TASK)

    def detect_classes(self, image: FileData, classes: list[str]) -> dict[str, Any]:
        """Find every instance of each named class in an image (open-vocabulary detection, any class names).

        Args:
            image: the image, as an http(s) URL of an image file or a data URL (data:image/png;base64,...).
            classes: the class names to look for, e.g. ["car", "traffic light"]; one query per class.

        Returns:
            A JSON object: image_size [width, height] and regions, each with box [x1, y1, x2, y2] in pixels,
            label (the phrase Florence-2 answered), query (the class asked for) and confidence (0..1).
        """
        try:
            picture = self._image(image)
            names = [classes] if isinstance(classes, str) else list(classes or [])
            if not all(isinstance(c, str) for c in names):
                raise InputError('classes must be a list of class names (strings), e.g. ["car", "person"].')
            if not any(c.strip() for c in names):
                raise InputError('detect_classes needs at least one class name, e.g. ["car", "person"].')
            results = self.engine.run_texts(picture, DETECT_TASK.token, names, settings=self.settings,
                                            cap=limits.current().max_boxes)  # fmt: skip
            answer = tool_answer("detect_classes", results, self.engine.model_id)
        except (InputError, ImageLoadError, FlorenceUIError, ValueError, TypeError) as exc:
            raise _error(exc) from exc
        return answer

    def ground_phrase(self, image: FileData, phrase: str) -> dict[str, Any]:
        """Find where each phrase of a caption is in the image (phrase grounding).

        Args:
            image: the image, as an http(s) URL of an image file or a data URL (data:image/png;base64,...).
            phrase: a phrase or caption, e.g. "a green car parked in front of a yellow building".

        Returns:
            A JSON object: image_size [width, height] and regions, each with box [x1, y1, x2, y2] in pixels,
            label (the phrase of the caption it grounds) and confidence (0..1).
        """
        return self._run("ground_phrase", image, GROUNDING_TASK, phrase)

    def describe_regions(self, image: FileData, boxes: list[list[float]]) -> dict[str, Any]:
        """Describe what is inside each given box in a short phrase (region to description).

        Args:
            image: the image, as an http(s) URL of an image file or a data URL (data:image/png;base64,...).
            boxes: the regions, each [x1, y1, x2, y2] in pixels of the image, e.g. [[10, 20, 200, 180]].

        Returns:
            A JSON object: image_size and regions, one per box in the order given, each with label (the
            description), prompt_box (the box asked about), box and confidence (0..1).
        """
        return self._run("describe_regions", image, DESCRIBE_REGION_TASK, boxes=boxes)

    def categorise_regions(self, image: FileData, boxes: list[list[float]]) -> dict[str, Any]:
        """Name the category of the object inside each given box (region to category).

        Args:
            image: the image, as an http(s) URL of an image file or a data URL (data:image/png;base64,...).
            boxes: the regions, each [x1, y1, x2, y2] in pixels of the image, e.g. [[10, 20, 200, 180]].

        Returns:
            A JSON object: image_size and regions, one per box in the order given, each with label (the
            category), prompt_box (the box asked about), box and confidence (0..1).
        """
        return self._run("categorise_regions", image, NAME_REGION_TASK, boxes=boxes)

    def segment(self, image: FileData, expression: str) -> dict[str, Any]:
        """Outline the object a phrase refers to as polygons (referring-expression segmentation).

        Args:
            image: the image, as an http(s) URL of an image file or a data URL (data:image/png;base64,...).
            expression: what to outline, e.g. "the red car on the left".

        Returns:
            A JSON object: image_size and regions, each with polygons (a list of parts, each a flat list
            [x1, y1, x2, y2, ...] of pixel points), box (the polygons' extent, [x1, y1, x2, y2]), label and
            confidence (0..1); on a server started with SAM (--sam) also sam_polygons (SAM's pixel-exact
            outline, same format) and sam_score (SAM's IoU estimate, 0..1).
        """
        return self._run("segment", image, REFERRING_SEGMENT_TASK, expression)

    def segment_regions(self, image: FileData, boxes: list[list[float]]) -> dict[str, Any]:
        """Outline the main object inside each given box as polygons (region to segmentation).

        Args:
            image: the image, as an http(s) URL of an image file or a data URL (data:image/png;base64,...).
            boxes: the regions, each [x1, y1, x2, y2] in pixels of the image, e.g. [[10, 20, 200, 180]].

        Returns:
            A JSON object: image_size and regions, one per box, each with polygons (parts, each a flat list
            [x1, y1, x2, y2, ...] of pixel points), box, label and confidence (0..1); with SAM (--sam) also
            sam_polygons and sam_score.
        """
        return self._run("segment_regions", image, REGION_SEGMENT_TASK, boxes=boxes)

    def ocr_with_regions(self, image: FileData) -> dict[str, Any]:
        """Read each line of text in the image with where it is (OCR with regions).

        Args:
            image: the image, as an http(s) URL of an image file or a data URL (data:image/png;base64,...).

        Returns:
            A JSON object: image_size and regions, one per line of text, each with label (the text read), quad
            (its 4 corners [x1, y1, ..., x4, y4] in pixels), box (their extent, [x1, y1, x2, y2]) and
            confidence (0..1).
        """
        return self._run("ocr_with_regions", image, OCR_REGIONS_TASK)

    def caption(self, image: FileData, detail: Literal["brief", "detailed", "paragraph"] = "brief") -> dict[str, Any]:
        """Describe the whole image in words (captioning).

        Args:
            image: the image, as an http(s) URL of an image file or a data URL (data:image/png;base64,...).
            detail: how long: "brief" (one sentence), "detailed" (a few sentences) or "paragraph".

        Returns:
            A JSON object: text (the caption), image_size [width, height], no regions, truncated.
        """
        task = CAPTION_TASKS.get(str(detail or CAPTION_DETAILS[0]).strip().lower())
        if task is None:
            raise _error(InputError(f"detail must be one of {', '.join(CAPTION_TASKS)}, got {detail!r}."))
        return self._run("caption", image, task)


def _endpoint(method: Callable[..., dict[str, Any]]) -> Callable[..., str]:
    """A tool method as gradio serves it: same name, docstring and typed parameters, the answer as JSON text.

    Gradio's MCP server sends a dict answer as its Python ``repr`` (``None``, ``True``, single quotes); as JSON
    text an agent or a program reads it with any JSON parser.
    """
    signature = inspect.signature(method)  # bound: no ``self``
    hints = typing.get_type_hints(method)  # this module's ``from __future__`` annotations, resolved
    parameters = [p.replace(annotation=hints[p.name]) for p in signature.parameters.values()]

    def endpoint(*args: Any, **kwargs: Any) -> str:
        return json.dumps(method(*args, **kwargs), ensure_ascii=False)

    endpoint.__name__ = endpoint.__qualname__ = method.__name__  # the tool's name
    endpoint.__doc__ = method.__doc__
    endpoint.__signature__ = signature.replace(parameters=parameters, return_annotation=str)  # type: ignore[attr-defined]
    endpoint.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": str}
    return endpoint


def _only_these_tools(names: Sequence[str]) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """A FastAPI lifespan that, at start-up, keeps gradio's MCP tool table to the endpoints ``names``."""
    endpoints = {"/" + name for name in names}

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        server = getattr(app.get_blocks(), "mcp_server_obj", None)
        if server is not None:
            table = getattr(server, "tool_to_endpoint", None)  # tool name (a Space prefixes its name) → endpoint
            if not isinstance(table, dict):  # fail closed: never serve the whole API because gradio changed
                raise RuntimeError(
                    "This gradio's MCP server has no tool table florence-ui can limit to its tools; start without "
                    "--mcp / FLORENCE_UI_MCP, or install the gradio version in requirements.txt."
                )
            server.tool_to_endpoint = {t: e for t, e in table.items() if e in endpoints}
        yield

    return lifespan


def register_mcp_tools(demo: gr.Blocks, engine: FlorenceEngine, *,
                       settings: GenerationSettings | None = None) -> dict[str, Any]:  # fmt: skip
    """Add the tools to a built page (:func:`florence_ui.ui.app.build_app`) and return how to launch them.

    Returns ``demo.launch`` options: ``mcp_server=True`` and ``app_kwargs`` with the lifespan that serves only
    :data:`TOOL_NAMES` over MCP (merge them into the launch options). Each tool is also a documented API
    endpoint of the same name. The tools share the page's model slot (``concurrency_id="model"``): one
    ``generate`` at a time, queued like the page's runs.
    """
    tools = FlorenceTools(engine, settings)
    # gradio warns at launch about the page's API endpoints that take a gr.State; the lifespan drops those from
    # the MCP server before it answers, so the warning would only mislead whoever reads the log
    warnings.filterwarnings("ignore", message="This MCP server includes a tool that has a gr.State input")
    with demo:
        for name in TOOL_NAMES:
            gr.api(_endpoint(getattr(tools, name)), api_name=name, concurrency_id="model", concurrency_limit=1)
    return {"mcp_server": True, "app_kwargs": {"lifespan": _only_these_tools(TOOL_NAMES)}}


__all__ = [
    "CAPTION_DETAILS",
    "CAPTION_TASKS",
    "TOOL_NAMES",
    "FlorenceTools",
    "region_entry",
    "register_mcp_tools",
    "tool_answer",
]
