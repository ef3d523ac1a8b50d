"""Start the web app: ``florence-ui serve`` (pip installs) and ``python app.py`` (a checkout) share this.

Why it lives in the package: ``app.py`` is not installed by pip, so a pip user
had no way to start the UI (issue 12). The options are defined once here
(:func:`add_arguments`); ``florence-ui serve`` and ``app.py`` both use them, so
they cannot drift apart.

What starting involves: parse the options, load the model once (a clear
message, not a traceback, when that fails), bring up the embedded Label Studio
unless one is configured, build the Blocks page and serve it until stopped.
Stopping by Ctrl-C, SIGTERM (a service manager, ``docker stop``, ``kill``) or
SIGHUP closes the web server, stops the Label Studio this app started and
exits with 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM).
Exit codes otherwise: 0 after a normal close, 1 the model could not be
loaded, 2 a bad option or ``FLORENCE_UI_*`` limit.

``--mcp`` (or ``FLORENCE_UI_MCP=1``, which a Space sets in its variables) also
serves the Florence-2 tasks as MCP tools for agents (:mod:`florence_ui.ui.mcp_tools`)
at ``/gradio_api/mcp/``. Gradio's own ``GRADIO_MCP_SERVER=true`` means the same:
without this module gradio would list every public API endpoint as a tool.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

#: the variable that turns ``--mcp`` on where no flag can be passed (a Space's settings)
MCP_ENV = "FLORENCE_UI_MCP"
#: the variable that names the SAM checkpoint where no flag can be passed (a Space's settings)
SAM_ENV = "FLORENCE_UI_SAM"
#: where gradio's MCP server answers (streamable HTTP; SSE clients add ``sse``)
MCP_PATH = "/gradio_api/mcp/"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")

DESCRIPTION = ("Florence-2 UI: run every Florence-2 task on an image, draw boxes as prompts, review the answers and "
               "teach how <loc_N> tokens become pixels.")  # fmt: skip


def add_model_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The model and generation options every server of the model shares (the app, ``florence-ui ml-backend``)."""
    from florence_ui.model.engine import MAX_NEW_TOKENS_LIMIT
    from florence_ui.model.loading import DEVICES, DTYPES, MODEL_ALIASES

    aliases = ", ".join(f"{k} = {v}" for k, v in MODEL_ALIASES.items())
    parser.add_argument("--model", default="base", help=f"alias ({aliases}), hub id or local checkpoint directory")
    parser.add_argument("--revision", default=None, help="hub branch, tag or commit of the model")
    parser.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICES)} or cuda:N")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPES,
        help="auto = float16 on CUDA, bfloat16 on CPUs with native bf16, else float32; int8 = quantised (CPU, opt-in)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS_LIMIT,
                        help=f"default answer length limit, 1..{MAX_NEW_TOKENS_LIMIT}")  # fmt: skip
    parser.add_argument("--num-beams", type=int, default=3, help="default beam count, 1 (greedy) .. 8")
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The app's options, on ``parser`` (``app.py``'s own, or the ``serve`` subcommand of ``florence-ui``)."""
    add_model_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 to serve the network)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)), help="port")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--no-labelstudio", action="store_true",
                        help="don't start a local Label Studio when LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY are unset")  # fmt: skip
    parser.add_argument("--sam", default=os.environ.get(SAM_ENV) or None, metavar="MODEL",
                        help="also load SAM to refine masks and segment clicks (alias slimsam, sam-base, ..., a hub id "
                             f"or a folder; default: {SAM_ENV}, else none). A SAM that cannot load is reported and "
                             "the app runs without it")  # fmt: skip
    parser.add_argument("--model-choices", default=None,
                        help="comma-separated models visitors may switch to on the page, one resident at a time "
                             "(sets FLORENCE_UI_MODEL_CHOICES; default: no picker)")  # fmt: skip
    parser.add_argument("--mcp", action="store_true",
                        help=f"also serve the Florence-2 tasks as MCP tools for agents at {MCP_PATH} "
                             f"(needs gradio[mcp]; default: {MCP_ENV}=1)")  # fmt: skip
    return parser


def build_parser(prog: str = "florence-ui serve") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    return add_arguments(parser)


def parse_args(argv: Sequence[str] | None = None, prog: str = "florence-ui serve") -> argparse.Namespace:
    return build_parser(prog).parse_args(argv)


def run(args: argparse.Namespace) -> int:
    """Load the model and serve the page until it is closed or the process is told to stop."""
    from florence_ui.labelstudio.server import StopSignals, started_pids, stop_started, supervising

    before = started_pids()  # servers this process ran before serve began are not serve's to stop
    with StopSignals() as stop:
        try:
            code = _serve(args)
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM or SIGHUP before the page was up (loading the model...)
            code = 0
        finally:
            stop.cleaning = True  # a signal now kills what was started and exits at once
            # what this app started (the embedded Label Studio), on every way out; later starts refused only if
            # a supervisor could still start one (a test calling main() in-process may start servers afterwards)
            stop_started(final=supervising(), keep=before)
    if stop.received:
        print(f"[florence-ui] stopped by signal {stop.received}; the servers this app started are stopped",
              file=sys.stderr, flush=True)  # fmt: skip
        return stop.exit_code
    return code


def attach_sam(engine, name: str, device: str | None = "auto") -> bool:
    """Load SAM now and give it to the engine; on failure say why and go on without refinement (False)."""
    from florence_ui.errors import SamLoadError
    from florence_ui.model.sam import load_sam

    print(f"Loading SAM '{name}'…", flush=True)
    try:
        engine.sam = load_sam(name, device=engine.device if device in (None, "auto") else device, lazy=False)
    except SamLoadError as exc:
        print(f"warning: {exc}\nThe app runs without SAM: no mask refinement, no click segmentation.",
              file=sys.stderr, flush=True)  # fmt: skip
        return False
    print(f"SAM: {engine.sam.describe()}", flush=True)
    return True


def mcp_wanted(args: argparse.Namespace, environ: dict[str, str] | None = None) -> bool:
    """``--mcp``, ``FLORENCE_UI_MCP`` or gradio's ``GRADIO_MCP_SERVER``; ValueError for a value that is neither."""
    environ = os.environ if environ is None else environ
    raw = environ.get(MCP_ENV, "").strip().lower()
    if raw not in _TRUE + _FALSE:
        raise ValueError(f"{MCP_ENV}={environ[MCP_ENV]!r} is not one of 1 / 0 (true, false, yes, no, on, off).")
    return bool(getattr(args, "mcp", False)) or raw in _TRUE or environ.get("GRADIO_MCP_SERVER", "").lower() == "true"


def mcp_missing() -> str | None:
    """Why the MCP server cannot start here (the ``mcp`` package is missing), or None."""
    try:
        import mcp  # noqa: F401 - gradio's MCP server needs it; gradio imports it only at launch
    except ImportError:
        return (
            "--mcp needs the MCP extra of gradio: pip install 'gradio[mcp]' (or start without --mcp / FLORENCE_UI_MCP)."
        )
    return None


def mcp_url(host: str, port: int | None) -> str:
    """The MCP URL a client on this machine uses (a server on every address is reached on 127.0.0.1)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{shown}:{port or 7860}{MCP_PATH}"


def _serve(args: argparse.Namespace) -> int:
    from florence_ui import FlorenceEngine, GenerationSettings, InputError, ModelLoadError
    from florence_ui.core.limits import LimitsError, current

    try:
        settings = GenerationSettings(args.max_new_tokens, args.num_beams).checked()
        current()  # a malformed FLORENCE_UI_* limit stops the start, not every later request
        mcp = mcp_wanted(args)
    except (InputError, LimitsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.model_choices:
        from florence_ui.ui.model_picker import MODEL_CHOICES_ENV

        os.environ[MODEL_CHOICES_ENV] = args.model_choices
    if mcp and (why := mcp_missing()):
        print(f"error: {why}", file=sys.stderr)
        return 2
    print(f"Loading Florence-2 '{args.model}' (device {args.device}, dtype {args.dtype})…", flush=True)
    try:
        engine = FlorenceEngine.from_pretrained(args.model, revision=args.revision, device=args.device,
                                                dtype=args.dtype)  # fmt: skip
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Loaded {engine.describe()}", flush=True)
    if getattr(args, "sam", None):
        attach_sam(engine, args.sam, args.device)
    if not args.no_labelstudio:
        from florence_ui.labelstudio.server import start_embedded_if_unconfigured

        start_embedded_if_unconfigured()  # background; a no-op when configured or Label Studio is not installed
    from florence_ui.ui.app import launch

    if mcp:
        from florence_ui.ui.mcp_tools import TOOL_NAMES

        url = mcp_url(args.host, args.port)
        print(f"MCP server: {url} (streamable HTTP; SSE: {url}sse) · tools: {', '.join(TOOL_NAMES)}", flush=True)
    # returns once closed
    launch(engine, settings=settings, host=args.host, port=args.port, share=args.share, mcp=mcp)
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "florence-ui serve") -> int:
    return run(parse_args(argv, prog))


if __name__ == "__main__":
    sys.exit(main())
