"""Hugging Face Space entry: the florence-ui app with Space-friendly defaults.

Model: ``FLORENCE_MODEL`` if set, else ``large`` on GPU / ZeroGPU and ``base``
on CPU. Model calls go through ``spaces.GPU`` when the ``spaces`` package is
present (ZeroGPU), a no-op elsewhere. Works from the assembled Space folder
(``florence_ui/`` beside this file) and from the repository (``spaces/app.py``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for candidate in (HERE, HERE.parent):
    if (candidate / "florence_ui").is_dir():
        sys.path.insert(0, str(candidate))
        break

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def create_demo(model: str | None = None):
    """Load the model (shared by all visitors) and build the Blocks app."""
    from florence_ui import FlorenceEngine
    from florence_ui.model.zerogpu import default_model, wrap_engine
    from florence_ui.ui.app import build_app

    device = "cuda" if os.environ.get("SPACES_ZERO_GPU") else os.environ.get("FLORENCE_DEVICE", "auto")
    engine = FlorenceEngine.from_pretrained(model or default_model(), device=device)
    if os.environ.get("FLORENCE_UI_SAM") and not os.environ.get("SPACES_ZERO_GPU"):
        from florence_ui.ui.serve import attach_sam

        attach_sam(engine, os.environ["FLORENCE_UI_SAM"])  # SAM refinement and clicks (not inside ZeroGPU slots)
    engine = wrap_engine(engine)
    demo = build_app(engine)
    demo.florence_engine = engine  # the MCP tools run on the same (wrapped) engine
    return demo


def main() -> None:
    from florence_ui import ModelLoadError

    try:
        demo = create_demo()
    except ModelLoadError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    from florence_ui.ui.app import launch_options
    from florence_ui.ui.mcp_tools import register_mcp_tools
    from florence_ui.ui.serve import mcp_wanted

    # agents call the Florence-2 tasks as MCP tools (only those) unless the Space sets FLORENCE_UI_MCP=0
    os.environ.setdefault("FLORENCE_UI_MCP", "1")
    tools = register_mcp_tools(demo, demo.florence_engine) if mcp_wanted(None) else {}
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        **launch_options(),
        **tools,
    )


if __name__ == "__main__":
    main()
