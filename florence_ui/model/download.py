"""``florence-ui download``: fetch a checkpoint once, use it offline with ``--model DIR``.

Labelling machines and Spaces are often cut off from the Hub; this copies a
whole Florence-2 checkpoint (weights, config, processor and tokenizer files)
into a plain folder with ``huggingface_hub.snapshot_download``. Every failure
becomes a :class:`ModelLoadError` naming the cause and the fix, never a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

from florence_ui.model.loading import ModelLoadError, explain_load_error, resolve_model_id

#: weights in formats transformers' PyTorch classes never read
IGNORE_PATTERNS = ["*.msgpack", "*.h5", "*.ot", "*.onnx", "*.onnx_data", "onnx/*", "flax_model*", "tf_model*"]


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def explain_download(model_id: str, revision: str | None, exc: BaseException) -> str:
    """Cause + fix for a failed download (the loader's wording where it applies)."""
    from huggingface_hub import errors as hf_errors

    head = f"Could not download Florence-2 model '{model_id}'" + (f" (revision {revision})" if revision else "")
    copy_fix = (
        f"run `florence-ui download {model_id} --to DIR` on a machine that can reach huggingface.co, copy DIR here "
        "and pass `--model DIR`."
    )
    if _offline() or isinstance(exc, hf_errors.OfflineModeIsEnabled):
        return (
            f"{head}: HF_HUB_OFFLINE is set, so the Hugging Face Hub is not contacted.\n"
            f"Fix: unset HF_HUB_OFFLINE (or set it to 0) where the Hub is reachable, or {copy_fix}"
        )
    gated = hf_errors.GatedRepoError | hf_errors.RepositoryNotFoundError | hf_errors.RevisionNotFoundError
    if isinstance(exc, gated) or (isinstance(exc, OSError) and getattr(exc, "errno", None) == 28):
        return explain_load_error(model_id, revision, exc).replace("Could not load", "Could not download", 1)
    text = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    if isinstance(exc, hf_errors.LocalEntryNotFoundError) or any(
        word in text.lower() for word in ("connect", "resolve", "timed out", "timeout", "name or service")
    ):
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
        return (
            f"{head}: the Hugging Face Hub ({endpoint}) could not be reached.\n"
            f"Fix: check the network, proxy (HTTPS_PROXY) or HF_ENDPOINT, or {copy_fix}"
        )
    return f"{head}: {text}.\nFix: check the id and your access, or {copy_fix}"


def download(model: str, to: str | Path, *, revision: str | None = None, token: str | None = None) -> Path:
    """Download ``model`` (alias or hub id) into ``to`` and check it looks like a checkpoint."""
    from huggingface_hub import snapshot_download

    model_id = resolve_model_id(model)
    if Path(model_id).expanduser().is_dir():
        raise ModelLoadError(f"'{model}' is already a local folder; nothing to download. Use `--model {model}`.")
    target = Path(to).expanduser()
    try:
        path = snapshot_download(
            model_id, revision=revision, local_dir=target, token=token, ignore_patterns=IGNORE_PATTERNS
        )
    except Exception as exc:  # every failure becomes one clear message
        raise ModelLoadError(explain_download(model_id, revision, exc)) from exc
    folder = Path(path)
    if not (folder / "config.json").exists():
        raise ModelLoadError(
            f"Downloaded '{model_id}' into {folder}, but it has no config.json: not a transformers checkpoint.\n"
            "Fix: use a Florence-2 checkpoint in transformers' format (aliases: base, large, base-ft, large-ft)."
        )
    return folder
