"""A Label Studio ML backend serving Florence-2: ``/health``, ``/setup``, ``/predict``, ``/webhook``.

Why this module exists: labelling teams work inside Label Studio, which calls
an "ML backend" over a small documented HTTP protocol to pre-annotate tasks and
to answer its smart tools. ``label-studio-ml`` (the reference server) is stale
on PyPI, so the protocol is served here with FastAPI / uvicorn (gradio ships
both). What each request gets is decided in
:mod:`~florence_ui.labelstudio.backend_config` (the config → task table), images are
read under :mod:`~florence_ui.labelstudio.backend_images`' rules (Label Studio's own
host or an allow-list only), predictions are built in
:mod:`~florence_ui.labelstudio.backend_predict`.

The protocol, as Label Studio 1.2x speaks it:

* ``GET /health`` (and ``GET /``) → ``{"status": "UP", "model_class": ..., "model_version": ...}``.
* ``POST /setup`` ``{"project": "<id>.<timestamp>", "schema": <labelling config>, ...}`` →
  ``{"model_version": ...}``; a config the backend cannot serve is a 400 with a sentence.
* ``POST /predict`` ``{"tasks": [...], "project": ..., "label_config": ..., "params": {"context": ...}}`` →
  ``{"results": [...], "model_version": ...}``, one entry per task in order: a prediction
  (``result``, ``score``, ``model_version``), or ``[]`` (no prediction) for a task whose image
  was refused or could not be read. With ``params.context.result`` (a smart tool) the
  answer is for that region, within the request. ``florence_ui`` in the answer counts, per
  task, the regions left out for want of a matching label and why a task got nothing.
* ``POST /webhook`` → 200 ``{"status": "ignored"}`` (this backend does not train).

Sharing one model: one generation at a time (a lock), at most ``max_waiting``
requests queued behind it; any more get a 503 with a sentence and ``Retry-After``.
Basic auth (``basic_auth=(user, password)``): every route but none answers 401
without it (Label Studio sends it when the backend is connected with
"Basic Authentication" and that user and password). The Label Studio key is only
ever sent to Label Studio: it is in no log line, no answer, no error.
"""

from __future__ import annotations

import base64
import hmac
import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from florence_ui.errors import FlorenceUIError
from florence_ui.labelstudio.backend_config import Plan
from florence_ui.labelstudio.backend_images import ImageSource
from florence_ui.labelstudio.backend_predict import KEYPOINT_BOX, Answer, Predictor

log = logging.getLogger(__name__)

MODEL_CLASS = "Florence2Backend"
#: requests allowed to wait behind the one that is generating (more: 503)
DEFAULT_MAX_WAITING = 8


class _Overloaded(FlorenceUIError, RuntimeError):
    """More requests than the backend queues: answered 503 (never leaves this module)."""


@dataclass
class BackendSettings:
    """How the backend runs: generation settings, the queue bound, the keypoint box, the image timeout."""

    generation: Any = None  # florence_ui.model.generation.GenerationSettings, None: the engine's defaults
    max_waiting: int = DEFAULT_MAX_WAITING
    keypoint_box: float = KEYPOINT_BOX
    image_timeout: float = 30.0


class ModelGate:
    """A bounded queue (``with gate.admit():`` per request, or :class:`_Overloaded`) and one generation at a time
    (``with gate.model:`` around each task's Florence-2 calls; images are read outside it)."""

    def __init__(self, max_waiting: int) -> None:
        self.max_waiting = max(0, int(max_waiting))
        self._admitted = 0
        self._count = threading.Lock()
        self.model = threading.Lock()

    @contextmanager
    def admit(self) -> Iterator[None]:
        with self._count:
            if self._admitted >= 1 + self.max_waiting:
                raise _Overloaded(f"Florence-2 is busy: {self._admitted} request(s) running or waiting, the most this "
                                 f"backend queues ({self.max_waiting} waiting). Try again shortly.")  # fmt: skip
            self._admitted += 1
        try:
            yield
        finally:
            with self._count:
                self._admitted -= 1


class _Backend:
    """The routes' shared state: engine, image source, gate, the plan of each labelling config seen."""

    def __init__(self, engine: Any, source: ImageSource, settings: BackendSettings) -> None:
        self.predictor = Predictor(engine, settings.generation, settings.keypoint_box)
        self.source = source
        self.gate = ModelGate(settings.max_waiting)
        self._plans: dict[str, Plan] = {}

    def plan(self, config: str) -> Plan:
        plan = self._plans.get(config)
        if plan is None:
            plan = Plan.from_config(config)
            if len(self._plans) > 64:
                self._plans.clear()
            self._plans[config] = plan
        return plan

    def predict_task(self, plan: Plan, task: dict[str, Any], context: dict[str, Any] | None) -> tuple[Any, dict]:
        """One task's entry of ``results`` and its line of the ``florence_ui`` summary."""
        task_id = task.get("id")
        summary: dict[str, Any] = {"task": task_id}
        url = (task.get("data") or {}).get(plan.schema.data_key)
        if not isinstance(url, str) or not url.strip():
            summary["refused"] = f"The task has no image under data.{plan.schema.data_key}."
            return [], summary
        try:
            image = self.source.read(url)
        except FlorenceUIError as exc:
            log.warning("task %s: no prediction: %s", task_id, exc)
            summary["refused"] = str(exc)
            return [], summary
        with self.gate.model:
            try:
                answer: Answer = (self.predictor.interactive(plan, image, context) if context
                                  else self.predictor.auto(plan, image))  # fmt: skip
            except FlorenceUIError as exc:
                log.warning("task %s: no prediction: %s", task_id, exc)
                summary["refused"] = str(exc)
                return [], summary
        summary.update(regions=len(answer.prediction["result"]), left_out=answer.left_out)
        if answer.left_out:
            log.info("task %s: %d region(s) left out (no matching label)", task_id, answer.left_out)
        return answer.prediction, summary


def create_app(engine: Any, *, ls_url: str, ls_api_key: str = "", allowed_hosts: Iterable[str] = (),
               basic_auth: tuple[str, str] | None = None, settings: BackendSettings | None = None):  # fmt: skip
    """The ML backend as a FastAPI app (``serve`` runs it with uvicorn; tests use FastAPI's TestClient)."""
    from fastapi import Body, FastAPI, Request
    from fastapi.responses import JSONResponse

    settings = settings or BackendSettings()
    source = ImageSource.of(ls_url, ls_api_key, allowed_hosts, timeout=settings.image_timeout)
    backend = _Backend(engine, source, settings)
    app = FastAPI(title="florence-ui ML backend", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.backend = backend

    @app.middleware("http")
    async def require_auth(request: Request, call_next):
        if basic_auth is not None and not _authorised(request.headers.get("authorization", ""), basic_auth):
            return JSONResponse({"detail": "This ML backend needs basic authentication: connect it in Label Studio "
                                           "with Basic Authentication and the backend's user and password."},
                                status_code=401, headers={"WWW-Authenticate": 'Basic realm="florence-ui"'})  # fmt: skip
        return await call_next(request)

    @app.get("/")
    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "UP", "model_class": MODEL_CLASS, "model_version": backend.predictor.model_version}

    @app.get("/versions")
    def versions() -> dict[str, Any]:
        """What Label Studio's model-version picker lists: this backend serves one model version."""
        return {"versions": [backend.predictor.model_version], "model_version": backend.predictor.model_version}

    @app.post("/setup")
    def setup(body: dict[str, Any] = Body(default_factory=dict)):  # noqa: B008 - FastAPI's way to read a body
        config = body.get("schema") or body.get("label_config")
        if config:
            try:
                backend.plan(str(config))
            except (ValueError, SyntaxError) as exc:
                return JSONResponse({"detail": f"This labelling config cannot be served by Florence-2: {exc}"},
                                    status_code=400)  # fmt: skip
        return {"model_version": backend.predictor.model_version}

    @app.post("/predict")
    def predict(body: dict[str, Any] = Body(default_factory=dict)):  # noqa: B008 - as above
        tasks = body.get("tasks") or []
        config = body.get("label_config") or ""
        params = body.get("params") or {}
        context = params.get("context") if isinstance(params, dict) else None
        if not isinstance(tasks, list) or not config:
            return JSONResponse({"detail": "A predict request needs 'tasks' (a list) and the project's "
                                           "'label_config'."}, status_code=400)  # fmt: skip
        try:
            plan = backend.plan(str(config))
        except (ValueError, SyntaxError) as exc:
            return JSONResponse({"detail": f"This labelling config cannot be served by Florence-2: {exc}"},
                                status_code=400)  # fmt: skip
        results, summaries = [], []
        try:
            with backend.gate.admit():
                for task in tasks:
                    entry, summary = backend.predict_task(plan, task if isinstance(task, dict) else {}, context or None)
                    results.append(entry)
                    summaries.append(summary)
        except _Overloaded as exc:
            return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})
        return {"results": results, "model_version": backend.predictor.model_version,
                "florence_ui": {"tasks": summaries}}  # fmt: skip

    @app.post("/webhook")
    def webhook(body: dict[str, Any] = Body(default_factory=dict)):  # noqa: B008 - as above
        log.debug("webhook %s ignored (this backend does not train)", body.get("action"))
        return {"status": "ignored"}

    return app


def _authorised(header: str, expected: tuple[str, str]) -> bool:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    return hmac.compare_digest(user, expected[0]) & hmac.compare_digest(password, expected[1])


def serve(engine: Any, host: str = "127.0.0.1", port: int = 9090, **kwargs: Any) -> None:
    """Run the backend with uvicorn until stopped (``kwargs``: :func:`create_app`'s)."""
    import uvicorn

    app = create_app(engine, **kwargs)
    log.info("Florence-2 ML backend on http://%s:%s (model %s)", host, port, app.state.backend.predictor.model_version)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
