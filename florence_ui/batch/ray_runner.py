"""``predict --engine ray``: the same batch work as a Ray Data pipeline over a cluster.

Each row of the dataset is one image and its pending jobs; ``map_batches`` hands
batches of rows to a pool of actors, each holding one loaded model (one GPU per
actor when the cluster has GPUs), and each actor runs :func:`batch.process_images`
— the local engine's own code — so both engines write the same lines. The
driver streams the answers back and writes results.jsonl itself (fsync per
line), so resume, failure reports and the summary work exactly as locally.

Point it at a cluster with ``--ray-address`` (or ``RAY_ADDRESS``): the images
must be readable at the same paths on every node (shared storage), and every
node needs florence-ui's dependencies; this package's code is shipped with the
job (``runtime_env.py_modules``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from florence_ui.batch.results_file import clean_json
from florence_ui.batch.runner import ImageOutcome, Job, group_by_image, process_images
from florence_ui.errors import ModelLoadError


class FlorencePredictor:
    """A Ray Data actor: loads the model once, then answers batches of image rows."""

    def __init__(
        self,
        model: str,
        settings: dict[str, int],
        *,
        revision: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        tile: bool = False,
        threads: int | None = None,
    ) -> None:
        from florence_ui.model.engine import FlorenceEngine, GenerationSettings
        from florence_ui.model.speed import set_threads

        set_threads(threads)
        self.settings = GenerationSettings(**settings).checked()
        self.tile = tile
        self.engine, self.load_error = None, ""
        try:
            self.engine = FlorenceEngine.from_pretrained(model, revision=revision, device=device, dtype=dtype)
        except ModelLoadError as exc:  # sent to the driver as data: a message, not an actor traceback
            self.load_error = str(exc)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        if self.engine is None:
            n = len(batch["image"])
            return {"image": list(batch["image"]), "lines": ["[]"] * n, "failures": ["[]"] * n,
                    "model_error": [self.load_error] * n}  # fmt: skip
        work = [
            (str(image), [Job.from_json(str(image), j) for j in json.loads(str(jobs))])
            for image, jobs in zip(batch["image"], batch["jobs"], strict=True)
        ]
        outcomes = process_images(self.engine, work, self.settings, tile=self.tile)
        return {
            "image": [o.image for o in outcomes],
            "lines": [json.dumps(clean_json(o.lines), ensure_ascii=False) for o in outcomes],
            "failures": [json.dumps(clean_json(o.failures), ensure_ascii=False) for o in outcomes],
            "model_error": [""] * len(outcomes),
        }


def init_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to ``address`` / ``RAY_ADDRESS`` or start a local Ray; returns True if we started it.

    An already initialised Ray (a notebook, a test fixture) is used as it is.
    """
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": True, "logging_level": logging.WARNING}
    if address:
        package = str(Path(__file__).resolve().parent)
        kwargs |= {"address": address, "runtime_env": {"py_modules": [package]}}
    else:
        kwargs |= {"num_cpus": num_cpus, "include_dashboard": False}
    ray.init(**kwargs)
    return True


def model_load_error(exc: BaseException) -> ModelLoadError | None:
    """The ModelLoadError an actor raised, found by its type under Ray's wrappers; None when there is none.

    Ray re-raises a remote exception as a ``RayTaskError`` that is also an
    instance of the original class (its ``str`` is the remote traceback) and
    holds the original as ``cause``: the original is returned, so the person
    reads the message alone. The message text is never searched (a log line
    quoting one is not one).
    """
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        cur = todo.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        inner = getattr(cur, "cause", None)
        if isinstance(cur, ModelLoadError) and not isinstance(inner, ModelLoadError):
            return cur
        todo += [cur.__cause__, cur.__context__, inner]
    return None


def ray_outcomes(
    pending: list[Job],
    settings: Any,
    *,
    model: str,
    revision: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    batch_size: int = 8,
    tile: bool = False,
    workers: int | None = None,
    cpus_per_worker: float = 1.0,
) -> Iterator[ImageOutcome]:
    """Stream the outcomes of a Ray Data ``map_batches`` pipeline over the pending jobs."""
    import ray
    import ray.data

    grouped = group_by_image(pending)
    if not grouped:
        return
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0)) if device in ("auto", "cuda") or device.startswith("cuda") else 0
    if gpus:
        pool, remote = workers or gpus, {"num_gpus": 1, "num_cpus": cpus_per_worker}
    else:
        cpus = max(1, int(resources.get("CPU", 1) // max(cpus_per_worker, 1)))
        pool, remote = workers or cpus, {"num_cpus": cpus_per_worker}
    pool = max(1, min(pool, len(grouped)))
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # our own tqdm bar counts images on the driver
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    rows = [{"image": image, "jobs": json.dumps([j.to_json() for j in jobs])} for image, jobs in grouped.items()]
    ds = ray.data.from_items(rows, override_num_blocks=min(len(rows), max(pool * 4, 1)))
    ds = ds.map_batches(
        FlorencePredictor,
        fn_constructor_kwargs={
            "model": model, "settings": asdict(settings), "revision": revision, "device": device, "dtype": dtype,
            "tile": tile, "threads": None if gpus else max(1, int(cpus_per_worker)),
        },
        batch_size=max(1, int(batch_size)),
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=pool),
        **remote,
    )  # fmt: skip
    try:
        for row in ds.iter_rows():
            if row["model_error"]:
                raise ModelLoadError(str(row["model_error"]))
            yield ImageOutcome(str(row["image"]), json.loads(row["lines"]), json.loads(row["failures"]))
    except Exception as exc:
        error = model_load_error(exc)
        if error is not None:
            raise error from None
        raise
