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
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

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


def _serve(args: argparse.Namespace) -> int:
    from florence_ui import FlorenceEngine, GenerationSettings, InputError, ModelLoadError
    from florence_ui.core.limits import LimitsError, current

    try:
        settings = GenerationSettings(args.max_new_tokens, args.num_beams).checked()
        current()  # a malformed FLORENCE_UI_* limit stops the start, not every later request
    except (InputError, LimitsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Loading Florence-2 '{args.model}' (device {args.device}, dtype {args.dtype})…", flush=True)
    try:
        engine = FlorenceEngine.from_pretrained(args.model, revision=args.revision, device=args.device,
                                                dtype=args.dtype)  # fmt: skip
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Loaded {engine.describe()}", flush=True)
    if not args.no_labelstudio:
        from florence_ui.labelstudio.server import start_embedded_if_unconfigured

        start_embedded_if_unconfigured()  # background; a no-op when configured or Label Studio is not installed
    from florence_ui.ui.app import launch

    launch(engine, settings=settings, host=args.host, port=args.port, share=args.share)  # returns once closed
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "florence-ui serve") -> int:
    return run(parse_args(argv, prog))


if __name__ == "__main__":
    sys.exit(main())
