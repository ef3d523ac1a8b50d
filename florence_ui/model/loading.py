"""Finding, choosing and loading a Florence-2 checkpoint, with errors a person can act on.

Only transformers' native classes are used (``Florence2ForConditionalGeneration``
+ ``AutoProcessor``): no ``trust_remote_code``, no ``flash_attn``. The converted
checkpoints live under ``florence-community/``; the short aliases below name
them. Everything that can go wrong while getting weights (offline, wrong id,
gated repo, full disk) becomes a :class:`ModelLoadError` whose message names the
model, the cause and the fix, because the UI and CLI show it as-is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from florence_ui.errors import ModelLoadError

MODEL_ALIASES: dict[str, str] = {
    "base": "florence-community/Florence-2-base",
    "large": "florence-community/Florence-2-large",
    "base-ft": "florence-community/Florence-2-base-ft",
    "large-ft": "florence-community/Florence-2-large-ft",
}

#: ``int8``: fp32 model with dynamically int8-quantised Linear layers (CPU only, opt-in: it changes answers slightly)
DTYPES = ("auto", "float32", "float16", "bfloat16", "int8")
DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_model_id(model: str) -> str:
    """Alias → hub id; a hub id or a local directory passes through unchanged."""
    return MODEL_ALIASES.get(model.strip(), model.strip())


def resolve_device(device: str | None = "auto") -> str:
    """``auto`` picks cuda, then mps, then cpu; explicit choices are checked."""
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    base = device.split(":")[0]
    if base == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("Device 'cuda' was asked for but PyTorch sees no CUDA GPU. Use --device cpu or auto.")
    if base == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelLoadError("Device 'mps' was asked for but it is not available. Use --device cpu or auto.")
    if base not in DEVICES:
        raise ModelLoadError(f"Unknown device {device!r}; use one of {', '.join(DEVICES)} (or cuda:N).")
    return device


def resolve_dtype(dtype: str | None, device: str) -> Any:
    """``auto``: fp16 on CUDA; on CPU bf16 only where the CPU computes it natively, else fp32; fp32 on MPS.

    fp16 on MPS/CPU is slow or wrong, and bf16 on a CPU without AVX512-BF16 /
    AMX is emulated: slower than fp32 and less exact (see florence_ui.model.speed).
    """
    import torch

    from florence_ui.model.speed import auto_cpu_dtype

    name = (dtype or "auto").lower()
    if name == "auto":
        if device.startswith("cuda"):
            return torch.float16
        if device != "cpu":
            return torch.float32
        try:
            return auto_cpu_dtype()
        except ValueError as exc:  # a malformed FLORENCE_UI_CPU_BF16: one clear start-up error, not a traceback
            raise ModelLoadError(str(exc)) from None
    table = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16}
    table |= {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "int8": torch.float32}  # int8: fp32 activations
    if name not in table:
        raise ModelLoadError(f"Unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}.")
    return table[name]


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub answers one short request, asked through huggingface_hub's own HTTP session.

    Without this check, from_pretrained retries every file several times and a
    user with no network waits minutes for the (same) error. The request goes
    where huggingface_hub itself would go (``HF_ENDPOINT``, a mirror on any
    port) through its own client, which honours ``HTTPS_PROXY`` / ``HTTP_PROXY``
    / ``NO_PROXY``, so a machine behind a mandatory proxy is not taken for
    offline. Any HTTP answer counts as reachable (a 401 or 404 is for
    from_pretrained to explain); only a failure to get one does not.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    try:
        get_session().head(constants.ENDPOINT.rstrip("/") + "/api/models", timeout=timeout, follow_redirects=False)
        return True
    except Exception:  # noqa: BLE001 - connection refused, DNS, proxy refusal, timeout: all mean "not reachable"
        return False


def _hub_options(source: str) -> dict[str, Any]:
    """``from_pretrained`` options for ``source``: cache first when the Hub cannot be reached.

    A local folder and ``HF_HUB_OFFLINE`` need nothing (huggingface_hub reads
    the cache itself then). Otherwise one short request decides: reachable →
    the normal online load (which also refreshes a cached copy); unreachable →
    ``local_files_only``, so a cached model loads at once and a missing one
    fails fast with the offline explanation.
    """
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    if Path(source).expanduser().exists() or offline or hub_reachable():
        return {}
    return {"local_files_only": True}


@dataclass(frozen=True)
class LoadedModel:
    """What :func:`load_model` returns: the pair plus how it was loaded."""

    model: Any
    processor: Any
    model_id: str
    revision: str | None
    device: str
    dtype: Any
    #: Linear layers dynamically quantised to int8 (``dtype="int8"``): ``dtype`` is then the fp32 of the activations
    int8: bool = False


def explain_load_error(model_id: str, revision: str | None, exc: BaseException) -> str:
    """Turn whatever from_pretrained (or a download) raised into cause + fix: the whole user-facing message."""
    from huggingface_hub import errors as hf_errors

    text = f"{type(exc).__name__}: {exc}"
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    looks_like_path = model_id.startswith((".", "/", "~")) or Path(model_id).expanduser().is_dir()
    rev = f" (revision {revision})" if revision else ""
    fix_local = (
        "Download it once where the Hub is reachable with `florence-ui download "
        f"{model_id} --to DIR` and start with `--model DIR`, or fill the Hugging Face cache and set HF_HUB_OFFLINE=1."
    )
    if looks_like_path and not Path(model_id).expanduser().exists():
        cause = f"the local directory {model_id} does not exist"
        fix = "Check the path, or pass a hub id / alias (base, large, base-ft, large-ft)."
    elif looks_like_path:
        cause = f"{model_id} is not a complete Florence-2 checkpoint ({text})"
        fix = "The folder needs config.json, the weights (*.safetensors) and the processor/tokenizer files."
    elif isinstance(exc, hf_errors.GatedRepoError):
        cause = "the repository is gated and this machine is not logged in"
        fix = "Accept the licence on the model page and run `hf auth login` (or set HF_TOKEN)."
    elif isinstance(exc, hf_errors.RevisionNotFoundError):
        cause = f"revision {revision!r} does not exist"
        fix = "Use an existing branch, tag or commit (or leave --revision out)."
    elif isinstance(exc, hf_errors.RepositoryNotFoundError):
        cause = "no such repository on the Hugging Face Hub"
        fix = "Check the id, or use an alias: " + ", ".join(f"{k} = {v}" for k, v in MODEL_ALIASES.items())
    elif isinstance(exc, OSError) and getattr(exc, "errno", None) == 28:
        cause = "the disk is full while downloading the weights"
        fix = "Free space or point HF_HOME at a bigger disk."
    elif (
        offline
        or isinstance(exc, hf_errors.LocalEntryNotFoundError | hf_errors.OfflineModeIsEnabled)
        or ("local_files_only" in text or "cannot find the requested files" in text.lower())
    ):
        cause = "the weights are not in the local cache and the Hub cannot be reached (offline)"
        fix = fix_local
    elif "connect" in text.lower() or "resolve" in text.lower() or "timed out" in text.lower():
        cause = "the Hugging Face Hub could not be reached"
        fix = fix_local
    else:
        cause = text
        fix = fix_local
    return f"Could not load Florence-2 model '{model_id}'{rev}: {cause}.\nFix: {fix}"


def load_model(
    model: str = "base",
    *,
    revision: str | None = None,
    device: str | None = "auto",
    dtype: str | None = "auto",
) -> LoadedModel:
    """Load model + processor with SDPA attention, on the chosen device and dtype, beams sharing encoder work."""
    from transformers import AutoProcessor, Florence2ForConditionalGeneration

    model_id = resolve_model_id(model)
    resolved_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, resolved_device)
    int8 = (dtype or "").lower() == "int8"
    if int8 and resolved_device != "cpu":
        raise ModelLoadError(f"dtype int8 (dynamic quantisation) runs on the CPU only, not on {resolved_device}.")
    source = str(Path(model_id).expanduser()) if model_id.startswith("~") else model_id
    extra = _hub_options(source)  # cache first when the Hub cannot be reached
    try:
        processor = AutoProcessor.from_pretrained(source, revision=revision, **extra)
        net = Florence2ForConditionalGeneration.from_pretrained(
            source, revision=revision, dtype=torch_dtype, attn_implementation="sdpa", **extra
        )
    except Exception as exc:  # every loading failure becomes one clear message
        raise ModelLoadError(explain_load_error(model_id, revision, exc)) from exc
    net.to(resolved_device)
    net.eval()
    from florence_ui.model.speed import beam_sharing_applies, quantize_int8, share_beam_work, weight_first_small_gemms

    if int8:
        net = quantize_int8(net)  # LoadedModel.int8: the engine reports "int8", not the fp32 of its activations
    if beam_sharing_applies(resolved_device):
        share_beam_work(net)  # beams share the encoder-side work: same answers, less time (see florence_ui.model.speed)
    if resolved_device == "cpu" and os.environ.get("FLORENCE_UI_GEMM_TUNING", "1") != "0":
        weight_first_small_gemms(net)  # decoding's few-row products, timed once here (~2 s for base)
    return LoadedModel(net, processor, model_id, revision, resolved_device, torch_dtype, int8=int8)


def load_processor(model: str = "base", *, revision: str | None = None) -> LoadedModel:
    """Only the processor (a few MB, no weights): enough to parse answers from any runtime."""
    from transformers import AutoProcessor

    model_id = resolve_model_id(model)
    source = str(Path(model_id).expanduser()) if model_id.startswith("~") else model_id
    extra = _hub_options(source)  # cache first when the Hub cannot be reached
    try:
        processor = AutoProcessor.from_pretrained(source, revision=revision, **extra)
    except Exception as exc:  # every loading failure becomes one clear message
        raise ModelLoadError(explain_load_error(model_id, revision, exc)) from exc
    if not hasattr(processor, "post_process_generation"):
        raise ModelLoadError(
            f"Could not load Florence-2 model '{model_id}': its processor ({type(processor).__name__}) "
            "is not a Florence-2 processor.\nFix: pass --model with a Florence-2 checkpoint (base, large, or a folder)."
        )
    return LoadedModel(None, processor, model_id, revision, "cpu", None)


def free_accelerator_memory() -> None:
    """Return freed GPU memory to the device after a model was dropped (a model swap on small hardware).

    Python frees the tensors once nothing refers to them (``gc.collect`` breaks the cycles); CUDA's caching
    allocator keeps the blocks for reuse until ``empty_cache``, so the next model would not fit beside them.
    """
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
