"""``florence-ui``: batch auto-labelling from the shell (the UI's other shell).

serve     the web app (same options as ``app.py``; see :mod:`florence_ui.ui.serve`)
predict   images/folders → results.jsonl (local or on Ray; resumable, loss-free)
export    results.jsonl, or a workspace's review (--workspace), → COCO / YOLO / Label Studio import JSON
push      results.jsonl, or a workspace's review (--workspace), → a Label Studio project (same code path as the UI)
pull      a Label Studio project's human-final annotations → COCO / YOLO / JSONL, and the model-assisted report
ml-backend Florence-2 as a Label Studio ML backend (pre-annotation and smart tools; see :mod:`florence_ui.labelstudio.backend`)
workspace a durable review store: import results.jsonl, status, export (see :mod:`florence_ui.workspace`)
download  a checkpoint into a folder for offline use
tasks     the task catalogue

Exit codes: 0 done; 1 finished but some images failed (listed in the summary);
2 usage, input or model-load error (a message, never a traceback); 130 interrupted.
``serve`` keeps ``app.py``'s codes (1 model-load error; 128 + signal when stopped by one).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from florence_ui import __version__
from florence_ui.core.tasks import DEFAULT_TASK, TASKS, get_task
from florence_ui.errors import ModelLoadError, ResultsFileError, UsageError

EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- predict ----------------------------------------------------------------------------
def cmd_predict(args: argparse.Namespace) -> int:
    from florence_ui.batch.results_file import JsonlWriter
    from florence_ui.batch.runner import (
        Summary,
        TaskRequest,
        drive,
        find_images,
        local_outcomes,
        make_jobs,
        parse_boxes_arg,
        plan,
    )
    from florence_ui.model.engine import GenerationSettings, InputError

    try:
        settings = GenerationSettings(args.max_new_tokens, args.num_beams).checked()
        tokens = dict.fromkeys(get_task(t).token for t in args.task)  # OD and <OD> are one task
        requests = [TaskRequest(token, args.text) for token in tokens]
        boxes = parse_boxes_arg(args.boxes)
    except (ValueError, InputError, OSError) as exc:
        raise UsageError(str(exc)) from exc
    if args.sam and args.engine == "ray":
        raise UsageError("--sam runs with --engine local (the Ray actors load Florence-2 only); drop one of them")
    for req in requests:
        spec = get_task(req.task)
        if spec.needs_text and not (args.text or "").strip():
            raise UsageError(f"{spec.token} ({spec.name}) needs --text, e.g. --text {spec.text_hint or 'car'!r}")
        if spec.needs_boxes and not boxes:
            raise UsageError(f"{spec.token} ({spec.name}) needs --boxes '[[x1, y1, x2, y2], ...]' or a JSON file")
        if args.tile and not spec.tileable:
            _err(f"warning: --tile does not apply to {spec.token}; it runs on the whole image")
    images, missing = find_images(args.inputs, _err)
    if not images:
        raise UsageError("no images found in " + ", ".join(map(str, args.inputs)))
    jobs, unplannable = make_jobs(images, requests, boxes)
    try:
        writer = JsonlWriter(args.out, lock=True)
    except (ResultsFileError, OSError) as exc:
        raise UsageError(str(exc)) from exc
    with writer:
        pending, done_before = plan(jobs, args.out, _err)
        summary = Summary(skipped=done_before, failed=missing + unplannable)
        total = len({j.image for j in pending})
        if pending:
            if args.engine == "ray":
                outcomes = _ray_outcomes(args, pending, settings)
            else:
                from florence_ui.model.engine import FlorenceEngine
                from florence_ui.model.speed import set_threads

                set_threads(args.threads)
                segmenter = None
                if args.sam:  # loaded first, so a bad --sam stops before any image (SamLoadError: exit 2)
                    from florence_ui.model.sam import load_sam

                    sam_dtype = "auto" if (args.dtype or "").lower() == "int8" else args.dtype
                    segmenter = load_sam(args.sam, device=args.device, dtype=sam_dtype, cache_size=2, lazy=False)
                    _err(f"sam: {segmenter.describe()}")
                engine = FlorenceEngine.from_pretrained(args.model, revision=args.revision, device=args.device,
                                                        dtype=args.dtype, cache_size=0)  # fmt: skip
                _err(f"model: {engine.describe()}")
                outcomes = local_outcomes(engine, pending, settings, batch_size=args.batch_size, tile=args.tile,
                                          segmenter=segmenter)  # fmt: skip
            with _sigterm_as_interrupt():
                drive(outcomes, writer, summary, total_images=total, progress=not args.quiet)
    print(summary.text(args.out))
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILURES if summary.failed else EXIT_OK


def _ray_outcomes(args: argparse.Namespace, pending: list, settings: Any):
    try:
        from florence_ui.batch.ray_runner import init_ray, ray_outcomes
    except ImportError as exc:
        raise UsageError(f"--engine ray needs Ray Data: pip install 'florence-ui[ray]' ({exc})") from exc
    started = init_ray(args.ray_address, args.ray_num_cpus)

    def outcomes():
        try:
            yield from ray_outcomes(
                pending, settings, model=args.model, revision=args.revision, device=args.device, dtype=args.dtype,
                batch_size=args.batch_size, tile=args.tile, workers=args.workers, cpus_per_worker=args.cpus_per_worker,
            )  # fmt: skip
        finally:
            if started:
                import ray

                ray.shutdown()

    return outcomes()


class _sigterm_as_interrupt:
    """``kill`` (SIGTERM) stops like Ctrl-C: at a line boundary, with the summary printed."""

    def __enter__(self) -> None:
        self._old = None
        try:
            self._old = signal.signal(signal.SIGTERM, self._handler)
        except ValueError:  # not the main thread (e.g. called from a worker thread)
            pass

    @staticmethod
    def _handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


# ---- export / push ---------------------------------------------------------------------------
@dataclass
class _Source:
    """What ``export`` / ``push`` send: the labelled images, the class order (None: by name), and whence."""

    items: list
    classes: list[str] | None
    workspace: str | None = None


def _source(args: argparse.Namespace) -> _Source:
    """The results files (re-parsed) or the workspace (``--workspace``): exactly one of the two, else a usage error."""
    results, workspace = getattr(args, "results", None) or [], getattr(args, "workspace", None)
    if results and workspace:
        raise UsageError(f"give either results.jsonl files or --workspace {workspace}, not both (a workspace "
                         "already holds its imported results: florence-ui workspace import adds more)")  # fmt: skip
    if workspace is None:
        if not results:
            raise UsageError(f"{args.command} needs results.jsonl file(s) or --workspace NAME")
        return _Source(_labeled(args), None)
    for flag, value in (("--min-confidence", getattr(args, "min_confidence", None)),
                        ("--model", getattr(args, "model", None)), ("--revision", getattr(args, "revision", None))):  # fmt: skip
        if value is not None:
            raise UsageError(f"{flag} applies to results files; a workspace sends what its reviewers accepted, as is")
    return _Source(*_workspace_labeled(workspace), workspace)


def _workspace_labeled(name: str) -> tuple[list, list[str]]:
    """An existing workspace's reviewed images and its label set in class-id order; never creates a workspace.

    ``workspace import`` and the page create workspaces; an output command that
    made an empty one for a mistyped name would hide the typo behind "nothing
    to export", so an unknown name is a usage error listing the known ones.
    """
    from florence_ui.errors import WorkspaceError
    from florence_ui.workspace import DATA_ENV, Workspace, workspace_names, workspace_path

    try:
        path = workspace_path(name)
    except WorkspaceError as exc:
        raise UsageError(str(exc)) from exc
    if not path.is_file():
        known = workspace_names()
        listed = f"the workspaces there: {', '.join(known)}" if known else "there are none there yet"
        raise UsageError(f"no workspace {name!r} under {path.parent.parent} (${DATA_ENV}); {listed}. Create one with "
                         "florence-ui workspace import RESULTS.jsonl --workspace NAME, or in the page")  # fmt: skip
    try:
        with Workspace.open(name) as ws:
            items, classes = ws.labeled_images(), ws.export_classes()
    except WorkspaceError as exc:
        raise UsageError(str(exc)) from exc
    missing = [i.name or i.image_path for i in items
               if i.image_data is None and not (i.image_path and Path(i.image_path).is_file())]  # fmt: skip
    if missing:  # stored by path and since moved: their pixels (and so their hash) are needed to export or push
        _err(f"warning: skipped {len(missing)} image(s) whose file is gone, e.g. {missing[0]}")
        items = [i for i in items if (i.name or i.image_path) not in missing]
    if not items:
        raise UsageError(f"workspace {name!r} has no reviewed image to export yet; accept some regions "
                         "first (florence-ui workspace status shows the progress)")  # fmt: skip
    return items, classes


def _labeled(args: argparse.Namespace) -> list:
    """The results files as LabeledImages, re-parsed with a weights-free parser."""
    from florence_ui.batch.results_file import iter_lines, labeled_images, parser_for

    try:
        lines = list(iter_lines(args.results, warn=_err))
    except ResultsFileError as exc:
        raise UsageError(str(exc)) from exc
    if not lines:
        raise UsageError(f"no results lines in {', '.join(args.results)}")
    parser = parser_for(lines, args.model, args.revision)
    base = Path(args.results[0]).resolve().parent
    items = labeled_images(lines, parser, min_confidence=args.min_confidence, base_dir=base, warn=_err)
    missing = [i.image_path for i in items if not (i.image_path and Path(i.image_path).is_file())]
    if missing:  # their pixels (and so their hash) are needed by every exporter and by push
        _err(f"warning: skipped {len(missing)} image(s) not found, e.g. {missing[0]}")
        items = [i for i in items if i.image_path not in missing]
    if not items:
        raise UsageError("none of the images in the results file were found")
    return items


def cmd_export(args: argparse.Namespace) -> int:
    """The UI's exporters (``florence_ui.export.datasets``) on the re-parsed results or a workspace's review."""
    from florence_ui.export import datasets as export

    source = _source(args)
    items, classes = source.items, source.classes
    out, conf = Path(args.out), getattr(args, "min_confidence", None)
    try:
        if args.format == "coco":
            written = export.export_coco(items, out, min_confidence=conf, classes=classes)
        elif args.format == "yolo":
            written = export.export_yolo(items, out, min_confidence=conf, classes=classes)
        else:
            written = export.export_labelstudio_json(items, out, min_confidence=conf, image_url=args.image_url,
                                                     copy_images=args.copy_images)  # fmt: skip
    except OSError as exc:
        raise UsageError(f"cannot write the export into {out}: {exc}") from exc
    regions = sum(len(i.regions) for i in items)
    if source.workspace is not None:
        print(f"Exported {len(items)} images, {regions} accepted regions of workspace {source.workspace} as "
              f"{args.format} → {written}")  # fmt: skip
        return EXIT_OK
    texts = sum(len(i.texts) for i in items)
    print(f"Exported {len(items)} images, {regions} regions, {texts} texts as {args.format} → {written}")
    return EXIT_OK


def _print_progress(done: int, total: int, name: str) -> None:
    _err(f"[{done}/{total}] {name}")


def cmd_push(args: argparse.Namespace) -> int:
    """The UI's push (``labelstudio_client.push_images``): one task per image, one prediction, idempotent."""
    from florence_ui.labelstudio.client import Connection, LabelStudioError, LSSettings, push_images
    from florence_ui.labelstudio.convert import MissingInProject

    if not args.url or not args.api_key:
        raise UsageError("push needs --url and --api-key (or LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY)")
    label_map = _label_map(args.map)
    source = _source(args)
    items = source.items
    progress = _print_progress if source.workspace is not None else None
    try:
        conn = Connection.of(LSSettings.from_env(url=args.url, api_key=args.api_key))
        project, created = _project_id(conn, args.project, items)
        report = push_images(conn, project, items, missing="map" if label_map else args.missing, label_map=label_map,
                             image_url=args.image_url, progress=progress)  # fmt: skip
    except MissingInProject as exc:
        raise UsageError(f"{exc}\nRe-run with --missing add (extend the project's config), --missing leave_out, "
                         "or --map OURS=THEIRS.") from None  # fmt: skip
    except LabelStudioError as exc:
        raise UsageError(str(exc)) from None
    print(report.summary())
    done = sum(1 for i in report.images if i.status in ("created", "updated"))
    where = "new project" if created else "project"
    print(f"Pushed {done} of {len(items)} images to {where} {project}: {report.project_url}")
    return EXIT_OK if report.ok else EXIT_FAILURES


def _label_map(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        ours, sep, theirs = pair.partition("=")
        if not sep or not ours.strip() or not theirs.strip():
            raise UsageError(f"--map takes OURS=THEIRS, got {pair!r}")
        out[ours.strip()] = theirs.strip()
    return out


def _project_id(conn: Any, project: str, items: list) -> tuple[int, bool]:
    """A numeric id as is; a title finds the project, or creates it with a config made for these labels."""
    from florence_ui.labelstudio.client import create_project, list_projects

    if project.strip().isdigit():
        return int(project), False
    matches = sorted(pid for pid, title in list_projects(conn) if title.strip() == project.strip())
    if len(matches) > 1:
        _err(f"warning: {len(matches)} projects are titled {project!r}; using the oldest, #{matches[0]}")
    if matches:
        return matches[0], False
    return create_project(conn, project, items), True


# ---- pull ----------------------------------------------------------------------------------------
def cmd_pull(args: argparse.Namespace) -> int:
    """A project's human-final annotations → COCO / YOLO / JSONL, and the model-assisted labelling report.

    Whose key goes where is :func:`florence_ui.labelstudio.access.decide`'s rule, as in the page: the key
    of ``LABEL_STUDIO_API_KEY`` only goes to ``LABEL_STUDIO_URL``; another ``--url`` needs ``--api-key``.
    """
    from florence_ui.export import datasets as export
    from florence_ui.labelstudio import pull
    from florence_ui.labelstudio.access import Exposure, decide_from_env
    from florence_ui.labelstudio.client import Connection, LabelStudioError, LSSettings
    from florence_ui.labelstudio.report import build_report

    out = Path(args.out)
    try:
        target = decide_from_env(args.url, args.api_key, exposure=Exposure())
        if not target.api_key:
            raise UsageError("pull needs an API key: --api-key or LABEL_STUDIO_API_KEY (for LABEL_STUDIO_URL)")
        conn = Connection.of(LSSettings.from_env(url=target.url, api_key=target.api_key))
        project = pull.resolve_project(conn, args.project)
        tasks = pull.export_tasks(conn, project)
        data_key, classes = pull.project_fields(conn, project)
        finals = pull.final_tasks(tasks, data_key)
        if args.format == "jsonl":
            written = pull.write_jsonl(finals, out / "annotations.jsonl")
            exported, left_out = len(finals), []
        else:
            items, left_out = pull.labeled_images(conn, finals)
            writer = export.export_coco if args.format == "coco" else export.export_yolo
            written, exported = writer(items, out, classes=classes), len(items)
    except LabelStudioError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot write the export into {out}: {exc}") from exc
    for why in left_out:
        _err(f"warning: left out {why}")
    report = build_report(tasks, args.model_version)
    report_json, chart = report.write(out)
    regions = sum(len(t.regions) for t in finals)
    print(report.table())
    print(f"Pulled {exported} annotated image(s), {regions} final region(s) of project {project} as {args.format} "
          f"→ {written}; report → {report_json}, {chart}")  # fmt: skip
    return EXIT_FAILURES if left_out else EXIT_OK


# ---- workspace -----------------------------------------------------------------------------------
def _workspace(args: argparse.Namespace) -> Any:
    """The named workspace under ``FLORENCE_UI_DATA``; its errors become usage errors (exit 2)."""
    from florence_ui.errors import WorkspaceError
    from florence_ui.workspace import Workspace

    try:
        return Workspace.open(args.workspace)
    except WorkspaceError as exc:
        raise UsageError(str(exc)) from exc


def cmd_workspace_import(args: argparse.Namespace) -> int:
    """results.jsonl → runs and pending regions of the workspace (re-parsed, no model run; idempotent)."""
    with _workspace(args) as ws:
        try:
            report = ws.import_results(args.results, model=args.model, revision=args.revision, warn=_err)
        except ResultsFileError as exc:
            raise UsageError(str(exc)) from exc
        print(f"{ws.name}: imported {args.results}: {report.summary()}")
        print(f"{ws.name}: {ws.progress()}")
    return EXIT_OK


def cmd_workspace_status(args: argparse.Namespace) -> int:
    with _workspace(args) as ws:
        progress = ws.progress()
        images = ", ".join(f"{n} {s}" for s, n in progress.images.items())
        regions = ", ".join(f"{n} {s}" for s, n in progress.regions.items())
        print(f"{ws.name}: {progress} ({ws.path})")
        print(f"images: {images}")
        print(f"regions: {regions}")
        print(f"label set: {', '.join(ws.class_names()) or '(empty)'}")
    return EXIT_OK


def cmd_workspace_export(args: argparse.Namespace) -> int:
    """``workspace export`` is ``export --workspace``: one code path, so both number the classes alike."""
    return cmd_export(args)


# ---- ml-backend ----------------------------------------------------------------------------------
#: the Florence-2 options ``ml-backend`` shares with ``serve`` (defined once: :func:`florence_ui.ui.serve.add_model_arguments`)
ENGINE_OPTIONS = ("model", "revision", "device", "dtype", "max_new_tokens", "num_beams")
BASIC_AUTH_ENV = "FLORENCE_UI_ML_BASIC_AUTH"


def _engine_args(p: argparse.ArgumentParser) -> None:
    """``serve``'s model and generation options on ``p``: one definition, so the two cannot drift apart."""
    from florence_ui.ui.serve import add_model_arguments

    add_model_arguments(p)


def _basic_auth(text: str | None) -> tuple[str, str] | None:
    """``USER:PASSWORD`` (the flag, else ``FLORENCE_UI_ML_BASIC_AUTH``) → the pair; empty: no authentication."""
    text = (text if text is not None else os.environ.get(BASIC_AUTH_ENV, "")).strip()
    if not text:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user.strip() or not password:
        raise UsageError(f"--basic-auth (or ${BASIC_AUTH_ENV}) takes USER:PASSWORD, both non-empty, e.g. "
                         "labeller:s3cret; connect the backend in Label Studio with Basic Authentication and the "
                         "same user and password")  # fmt: skip
    return user.strip(), password


def cmd_ml_backend(args: argparse.Namespace) -> int:
    """Serve Florence-2 to Label Studio until stopped (:func:`florence_ui.labelstudio.backend.serve`).

    The Label Studio key follows :func:`florence_ui.labelstudio.access.decide`'s rule, as ``pull`` does: the
    key of ``LABEL_STUDIO_API_KEY`` only goes to ``LABEL_STUDIO_URL``; another ``--ls-url`` needs ``--api-key``.
    Every argument is checked before the model loads, so a typo costs no minutes of loading.
    """
    from florence_ui.core.limits import LimitsError, current
    from florence_ui.errors import LabelStudioError
    from florence_ui.labelstudio import backend
    from florence_ui.labelstudio.access import Exposure, decide_from_env, is_loopback_host
    from florence_ui.labelstudio.backend_images import ImageSource
    from florence_ui.model.engine import FlorenceEngine, GenerationSettings, InputError

    if not 0 < args.port < 65536:
        raise UsageError(f"--port takes 1..65535, got {args.port}")
    if args.max_waiting < 0:
        raise UsageError(
            f"--max-waiting takes 0 or more (requests queued behind the running one), got {args.max_waiting}"
        )
    auth = _basic_auth(args.basic_auth)
    try:
        settings = GenerationSettings(args.max_new_tokens, args.num_beams).checked()
        current()  # a malformed FLORENCE_UI_* limit stops the start, not every later request
    except (InputError, LimitsError) as exc:
        raise UsageError(str(exc)) from exc
    try:
        # the operator's own Label Studio (not a visitor's URL): no public-address check, as for pull
        target = decide_from_env(args.url, args.api_key, exposure=Exposure())
        ImageSource.of(target.url, target.api_key, args.allow_host)  # the URL and the allowed hosts, checked now
    except LabelStudioError as exc:
        raise UsageError(str(exc)) from None
    if not target.api_key:
        _err(f"warning: no Label Studio API key: images stored in Label Studio at {target.url} will be refused; "
             "give --api-key or LABEL_STUDIO_API_KEY (for LABEL_STUDIO_URL)")  # fmt: skip
    if auth is None and not is_loopback_host(args.host):
        _err(f"warning: listening on {args.host} without --basic-auth: anyone who reaches this port can run "
             "Florence-2 here")  # fmt: skip
    _err(f"Loading Florence-2 '{args.model}' (device {args.device}, dtype {args.dtype})…")
    engine = FlorenceEngine.from_pretrained(args.model, revision=args.revision, device=args.device,
                                            dtype=args.dtype)  # fmt: skip
    _err(f"model: {engine.describe()}; images from Label Studio at {target.url}")
    backend.serve(engine, host=args.host, port=args.port, ls_url=target.url, ls_api_key=target.api_key,
                  allowed_hosts=tuple(args.allow_host), basic_auth=auth,
                  settings=backend.BackendSettings(generation=settings, max_waiting=args.max_waiting))  # fmt: skip
    return EXIT_OK


# ---- serve ---------------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    """The web app, exactly as ``app.py`` starts it (:func:`florence_ui.ui.serve.run`)."""
    from florence_ui.ui.serve import run

    return run(args)


# ---- download / tasks --------------------------------------------------------------------------
def cmd_download(args: argparse.Namespace) -> int:
    from florence_ui.model.download import download

    folder = download(args.model, args.to, revision=args.revision, token=args.token)
    print(f"Downloaded to {folder}. Use it offline with: florence-ui predict ... --model {folder}")
    return EXIT_OK


def cmd_tasks(args: argparse.Namespace) -> int:
    width = max(len(t.token) for t in TASKS)
    for task in TASKS:
        needs = {"none": "", "text": "  [--text]", "boxes": "  [--boxes]"}[task.input.value]
        tile = "  [--tile]" if task.tileable else ""
        print(f"{task.token:<{width}}  {task.output.value:<11}  {task.explanation}{needs}{tile}")
    return EXIT_OK


# ---- parser ----------------------------------------------------------------------------------------
def _model_args(p: argparse.ArgumentParser, default: str | None, help_text: str) -> None:
    p.add_argument("--model", default=default, help=help_text)
    p.add_argument("--revision", default=None, help="hub branch, tag or commit")


def _labelstudio_export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--image-url",
        default=None,
        help="labelstudio: image reference template ({name}, {hash}) instead of embedded data: URIs, "
        "e.g. '/data/local-files/?d=images/{name}'",
    )
    p.add_argument("--copy-images", action="store_true", help="labelstudio: also copy the images into OUT/images")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="florence-ui", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"florence-ui {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from florence_ui.ui.serve import DESCRIPTION, add_arguments

    p = sub.add_parser("serve", help="start the web app (the options of app.py)", description=DESCRIPTION,
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    add_arguments(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("predict", help="run Florence-2 over images and folders → results.jsonl")
    p.add_argument("inputs", nargs="+", metavar="IMAGES_OR_DIRS", help="image files and folders (recursive)")
    p.add_argument(
        "--task",
        action="append",
        required=True,
        help=f"task token or name ({DEFAULT_TASK.token}, {DEFAULT_TASK.token.strip('<>')}, {DEFAULT_TASK.name!r}); "
        "repeat for several tasks per image",
    )
    p.add_argument("--text", default=None, help="text input for text tasks (grounding, open-vocabulary, ...)")
    p.add_argument(
        "--boxes",
        default=None,
        help="prompt boxes for region tasks: JSON [[x1,y1,x2,y2],...] in pixels, or a JSON file "
        "holding that list or {image path or file name: boxes}",
    )
    p.add_argument("--out", required=True, help="results.jsonl (appended to; finished lines are skipped on resume)")
    _model_args(p, "base", "alias (base, large, base-ft, large-ft), hub id or local folder (default: base)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps (default: auto)")
    p.add_argument(
        "--dtype",
        default="auto",
        help="auto, float32, float16, bfloat16, int8 (CPU, opt-in: quantised, answers can differ) (default: auto)",
    )
    p.add_argument("--batch-size", type=int, default=8, help="images per model call (default: 8)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads of the local engine (default: PyTorch's)")
    p.add_argument("--tile", action="store_true", help="tiled inference (sv.InferenceSlicer) for detection tasks")
    p.add_argument(
        "--sam",
        default=None,
        metavar="MODEL",
        help="refine every box with SAM (alias slimsam, slimsam-77, sam-base, sam-large, sam-huge, sam2-tiny; "
        "a hub id or a folder): each line gets sam_polygons, sam_scores, sam_boxes and sam_model",
    )
    p.add_argument("--max-new-tokens", type=int, default=1024, help="answer length limit (default: 1024)")
    p.add_argument("--num-beams", type=int, default=3, help="beam search width, 1 = greedy (default: 3)")
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="local process or Ray Data")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default: $RAY_ADDRESS, else local)")
    p.add_argument("--ray-num-cpus", type=int, default=None, help="CPUs of a local Ray started here")
    p.add_argument("--workers", type=int, default=None, help="Ray model actors (default: one per GPU, else per CPU)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs per Ray actor (default: 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_predict)

    parse_help = "checkpoint whose processor re-parses the answers (default: the file's model, else base)"
    name_help = "workspace name (letters, digits, - and _), a file under $FLORENCE_UI_DATA/workspaces"
    ws_source_help = ("an existing workspace ($FLORENCE_UI_DATA) instead of results files: its reviewed images, "
                      "accepted regions only, class ids in its label set's order")  # fmt: skip
    p = sub.add_parser("export", help="results.jsonl or a workspace → COCO / YOLO / Label Studio JSON")
    p.add_argument("results", nargs="*", help="results.jsonl file(s) (or --workspace)")
    p.add_argument("--workspace", default=None, metavar="NAME", help=ws_source_help)
    p.add_argument("--format", required=True, choices=("coco", "yolo", "labelstudio"))
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--min-confidence", type=float, default=None, help="drop regions/texts scored below this")
    _labelstudio_export_args(p)
    _model_args(p, None, parse_help)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("push", help="results.jsonl or a workspace → Label Studio predictions (idempotent)")
    p.add_argument("results", nargs="*", help="results.jsonl file(s) (or --workspace)")
    p.add_argument("--workspace", default=None, metavar="NAME", help=ws_source_help.split(", class ids")[0])
    p.add_argument("--url", default=os.environ.get("LABEL_STUDIO_URL"), help="Label Studio URL ($LABEL_STUDIO_URL)")
    p.add_argument(
        "--api-key",
        default=os.environ.get("LABEL_STUDIO_API_KEY"),
        help="API token; prefer $LABEL_STUDIO_API_KEY (a flag shows in `ps` and shell history)",
    )
    p.add_argument("--project", required=True, help="project title (created if missing) or numeric id")
    p.add_argument("--min-confidence", type=float, default=None, help="drop regions/texts scored below this")
    p.add_argument(
        "--missing",
        choices=("ask", "add", "leave_out"),
        default="ask",
        help="labels the project lacks: stop and explain (ask), add them to its config, or leave them out",
    )
    p.add_argument("--map", action="append", metavar="OURS=THEIRS", help="rename a label onto the project's")
    p.add_argument(
        "--image-url",
        default=None,
        help="reference images instead of uploading them, e.g. '/data/local-files/?d=photos/{name}'",
    )
    _model_args(p, None, parse_help)
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("pull", help="a Label Studio project's final annotations → COCO / YOLO / JSONL + report")
    p.add_argument("--url", default=None, help="Label Studio URL (default: $LABEL_STUDIO_URL)")
    p.add_argument(
        "--api-key",
        default=None,
        help="API token for --url; default $LABEL_STUDIO_API_KEY, which is only sent to $LABEL_STUDIO_URL",
    )
    p.add_argument("--project", required=True, help="project id or exact title (never created)")
    p.add_argument("--format", required=True, choices=("coco", "yolo", "jsonl"))
    p.add_argument("--out", required=True, help="output folder (the dataset, report.json, report.png)")
    p.add_argument(
        "--model-version",
        default=None,
        help="compare predictions of this model@revision only (default: any Florence-2 prediction)",
    )
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("ml-backend", help="serve Florence-2 as a Label Studio ML backend (/health /setup /predict "
                       "/webhook)", formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    _engine_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 to serve the network)")
    p.add_argument("--port", type=int, default=9090, help="port (9090 is what Label Studio suggests for ML backends)")
    p.add_argument("--ls-url", "--url", dest="url", default=None,
                   help="the Label Studio whose task images are read; None: $LABEL_STUDIO_URL")  # fmt: skip
    p.add_argument("--api-key", default=None,
                   help="API token for --ls-url; None: $LABEL_STUDIO_API_KEY, which is only sent to $LABEL_STUDIO_URL")  # fmt: skip
    p.add_argument("--allow-host", action="append", default=[], metavar="HOST_OR_ORIGIN",
                   help="also read task images from this host (no key is sent there); repeatable")  # fmt: skip
    p.add_argument("--basic-auth", default=None, metavar="USER:PASSWORD",
                   help=f"require HTTP basic auth; None: ${BASIC_AUTH_ENV} (which keeps it out of `ps`), unset: none")  # fmt: skip
    from florence_ui.labelstudio.backend import DEFAULT_MAX_WAITING

    p.add_argument("--max-waiting", type=int, default=DEFAULT_MAX_WAITING,
                   help="requests queued behind the running one; more are answered 503")  # fmt: skip
    p.set_defaults(func=cmd_ml_backend)

    p = sub.add_parser("workspace", help="a durable review store ($FLORENCE_UI_DATA): import, status, export")
    ws_sub = p.add_subparsers(dest="workspace_command", required=True, metavar="ACTION")
    p = ws_sub.add_parser("import", help="results.jsonl → pending regions to review (no model run; idempotent)")
    p.add_argument("results", help="a results.jsonl from florence-ui predict")
    p.add_argument("--workspace", required=True, help=name_help)
    _model_args(p, None, parse_help)
    p.set_defaults(func=cmd_workspace_import)
    p = ws_sub.add_parser("status", help="progress and counts by status")
    p.add_argument("--workspace", required=True, help=name_help)
    p.set_defaults(func=cmd_workspace_status)
    p = ws_sub.add_parser("export", help="accepted regions of every reviewed image → one dataset (= export "
                          "--workspace)")  # fmt: skip
    p.add_argument("--workspace", required=True, help=name_help)
    p.add_argument("--format", required=True, choices=("coco", "yolo", "labelstudio"))
    p.add_argument("--out", required=True, help="output folder")
    _labelstudio_export_args(p)
    p.set_defaults(func=cmd_workspace_export)

    p = sub.add_parser("download", help="fetch a checkpoint into a folder for offline use")
    p.add_argument("model", help="alias (base, large, base-ft, large-ft) or hub id")
    p.add_argument("--to", required=True, help="target folder")
    p.add_argument("--revision", default=None, help="hub branch, tag or commit")
    p.add_argument("--token", default=None, help="Hugging Face token for gated repos (default: $HF_TOKEN / login)")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("tasks", help="list the Florence-2 tasks")
    p.set_defaults(func=cmd_tasks)
    return parser  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ModelLoadError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except UsageError as exc:
        _err(f"error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
