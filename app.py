"""Start the florence-ui web app: ``python app.py --model base`` (or ``make run``).

Thin on purpose: parse the options, load the model once (a clear message, not
a traceback, when that fails), build the Blocks page and serve it.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from florence_ui.engine import MAX_NEW_TOKENS_LIMIT
    from florence_ui.loading import DEVICES, DTYPES, MODEL_ALIASES

    aliases = ", ".join(f"{k} = {v}" for k, v in MODEL_ALIASES.items())
    parser = argparse.ArgumentParser(
        prog="app.py",
        description="Florence-2 UI: run every Florence-2 task on an image, draw boxes as prompts, "
        "review the answers and teach how <loc_N> tokens become pixels.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", default="base", help=f"alias ({aliases}), hub id or local checkpoint directory")
    parser.add_argument("--revision", default=None, help="hub branch, tag or commit of the model")
    parser.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICES)} or cuda:N")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPES,
        help="auto = float16 on CUDA, bfloat16 on CPUs with native bf16, else float32; int8 = quantised (CPU, opt-in)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 to serve the network)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)), help="port")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS_LIMIT,
                        help=f"default answer length limit, 1..{MAX_NEW_TOKENS_LIMIT}")  # fmt: skip
    parser.add_argument("--num-beams", type=int, default=3, help="default beam count, 1 (greedy) .. 8")
    parser.add_argument("--no-labelstudio", action="store_true",
                        help="don't start a local Label Studio when LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY are unset")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from florence_ui import FlorenceEngine, GenerationSettings, InputError, ModelLoadError
    from florence_ui.limits import LimitsError, current

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
        from florence_ui.ls_server import start_embedded_if_unconfigured

        start_embedded_if_unconfigured()  # background; a no-op when configured or Label Studio is not installed
    from florence_ui.ui.app import launch

    launch(engine, settings=settings, host=args.host, port=args.port, share=args.share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
