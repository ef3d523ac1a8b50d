"""The benchmark harness end to end on the tiny model, and the CPU speed settings it justified.

The harness run checks the contract (every JSON key, the markdown table, a
real PNG plot), never a timing: on the tiny model the figures mean nothing.
The speed tests pin the dtype policy (``auto`` stays fp32 on a CPU without
native bf16) and that the answer check can tell a changed model apart.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import torch

from florence_ui.model import speed
from florence_ui.model.loading import load_model, resolve_dtype

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
KEYS = {
    "cached_over_cold", "batch4_over_sequential4", "engine_over_reference", "vision_efficiency", "app_overhead_ratio",
    "reference_cold_s", "engine_cold_s", "engine_cached_s", "engine_batch4_s", "sequential4_s", "vision_s",
    "vision_gflop", "vision_gflops_per_s", "matmul_peak_gflops", "long_output_s", "decode_ms_per_token",
    "app_e2e_s", "app_engine_s", "peak_rss_mb", "dtype", "threads", "cpu_flags", "system", "settings",
    "targets_met", "engine_reference_token_agreement", "samples_s", "reference_decode_ms_per_token",
    "decode_over_reference_per_token", "first_token_s", "tiled_s", "sequential_tiles_s", "tiled_over_sequential_tiles",
    "decode_weight_mb", "memory_read_gb_per_s", "decode_floor_ms_per_token",
}  # fmt: skip


@pytest.fixture(scope="module")
def harness():
    sys.path.insert(0, str(BENCH))
    import run

    return run


def test_harness_writes_json_markdown_and_plot(harness, tiny_checkpoint, tmp_path):
    out = tmp_path / "bench.json"
    argv = ["--size", "tiny", "--model-dir", str(tiny_checkpoint), "--quick", "--repeats", "1", "--tokens", "4",
            "--long-tokens", "8", "--dtype", "float32", "--json", str(out), "--markdown", str(tmp_path / "bench.md"),
            "--plot", str(tmp_path / "bench.png")]  # fmt: skip
    harness.main(argv)
    fig = json.loads(out.read_text())
    assert KEYS <= set(fig), KEYS - set(fig)
    assert fig["settings"]["new_tokens"] == 4 and fig["settings"]["repeats"] == 1
    for key in ("cached_over_cold", "batch4_over_sequential4", "engine_over_reference", "vision_efficiency"):
        assert isinstance(fig[key], float) and fig[key] > 0, key
    assert fig["engine_cached_s"] == pytest.approx(fig["cached_over_cold"] * fig["engine_cold_s"], rel=0.01)
    assert -1 < fig["app_overhead_ratio"] < 1
    from _report import TARGETS

    assert set(fig["targets_met"]) == set(TARGETS) == {k for k in KEYS if k.endswith(("_over_cold", "_over_sequential4",
                                                                                     "_over_reference", "_efficiency",
                                                                                     "_ratio", "_per_token"))
                                                       and "_ms_" not in k}  # fmt: skip
    assert fig["first_token_s"] > 0 and fig["tiles"] >= 2 and fig["tiled_over_sequential_tiles"] > 0
    # the engine answers exactly what the model-card recipe answers (fp32, same beams, same length)
    assert fig["engine_reference_token_agreement"] == 1.0
    assert all(len(v) == 1 for v in fig["samples_s"].values())
    md = (tmp_path / "bench.md").read_text()
    assert "| `engine_over_reference` |" in md and "| `app_e2e_s` |" in md
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cuda_without_a_gpu_fails_with_a_clear_message(harness, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit) as exc:
        harness.parse_args(["--device", "cuda", "--json", str(tmp_path / "x.json")])
    assert exc.value.code == 2
    assert "sees no CUDA GPU" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "expected"),
    [({"avx2", "fma"}, torch.float32), ({"avx2", "avx512f", "avx512_bf16"}, torch.bfloat16),
     ({"avx512f", "amx_bf16", "amx_tile"}, torch.bfloat16), (set(), torch.float32)],
)  # fmt: skip
def test_auto_cpu_dtype_is_bf16_only_where_native(flags, expected, monkeypatch):
    monkeypatch.setattr(speed.platform, "system", lambda: "Linux")
    assert speed.auto_cpu_dtype(frozenset(flags)) == expected


def test_auto_dtype_stays_fp32_on_a_cpu_without_native_bf16(monkeypatch):
    monkeypatch.delenv("FLORENCE_UI_CPU_BF16", raising=False)  # the flags decide here, not the suite's override
    monkeypatch.setattr(speed, "cpu_flags", lambda: frozenset({"avx2", "fma", "avx512f"}))
    assert resolve_dtype("auto", "cpu") == torch.float32
    monkeypatch.setattr(speed, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    monkeypatch.setattr(speed.platform, "system", lambda: "Linux")
    assert resolve_dtype("auto", "cpu") == torch.bfloat16
    assert resolve_dtype("auto", "cuda") == torch.float16
    assert resolve_dtype("float32", "cpu") == torch.float32


def _probe(tiny_checkpoint):
    loaded = load_model(str(tiny_checkpoint), device="cpu", dtype="float32")
    proc = loaded.processor
    from PIL import Image

    image = Image.new("RGB", (80, 60), (200, 40, 90))
    inputs = dict(proc(text="<CAPTION>", images=image, return_tensors="pt"))
    with torch.inference_mode():
        ids = loaded.model.generate(**inputs, max_new_tokens=12, min_new_tokens=12, num_beams=1, do_sample=False)
    return loaded.model, inputs, ids[:, :-1]


def test_top1_agreement_is_one_for_the_same_model_and_drops_for_a_changed_one(tiny_checkpoint):
    model, inputs, decoder_ids = _probe(tiny_checkpoint)
    assert speed.top1_agreement(model, model, inputs, decoder_ids) == 1.0
    broken = copy.deepcopy(model)
    # the output head negated, untied from the input embeddings: every preference reverses, the picks must change
    broken.lm_head.weight = torch.nn.Parameter(-model.lm_head.weight.detach().clone())
    assert speed.top1_agreement(model, broken, inputs, decoder_ids) < 0.5


def test_bf16_and_int8_top1_agreement_with_fp32_on_the_tiny_model(tiny_checkpoint):
    """Reported figures, held to loose floors: a regression (wrong cast, broken quantisation) falls far below."""
    model, inputs, decoder_ids = _probe(tiny_checkpoint)
    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    int8 = speed.quantize_int8(copy.deepcopy(model))
    assert any("quantized.dynamic" in type(m).__module__ for m in int8.modules())
    assert speed.top1_agreement(model, bf16, inputs, decoder_ids) >= 0.75
    assert speed.top1_agreement(model, int8, inputs, decoder_ids) >= 0.75


def test_share_beam_work_keeps_answers_and_scores_identical(tiny_checkpoint, monkeypatch):
    """load_model's beam patch is only allowed because it is exact: same ids and probabilities as plain transformers."""
    from PIL import Image
    from transformers import Florence2ForConditionalGeneration

    from florence_ui import FlorenceEngine
    from florence_ui.model.loading import LoadedModel

    monkeypatch.setenv("FLORENCE_UI_GEMM_TUNING", "0")  # this test is about the beam patch alone
    patched = FlorenceEngine.from_pretrained(str(tiny_checkpoint), device="cpu", dtype="float32")
    assert patched.model._reorder_cache is speed.reorder_self_attention_only  # noqa: SLF001 - transformers' hook
    plain_model = Florence2ForConditionalGeneration.from_pretrained(str(tiny_checkpoint)).eval()
    plain = FlorenceEngine(LoadedModel(plain_model, patched.processor, "plain", None, "cpu", torch.float32))
    for model in (patched.model, plain_model):
        model.generation_config.min_new_tokens = 10
    image = Image.new("RGB", (120, 90), (30, 140, 220))
    boxes = [[5, 5, 60, 60], [40, 20, 110, 80], [0, 0, 119, 89]]
    for task, kw in (("<CAPTION>", {}), ("<REGION_TO_CATEGORY>", {"boxes": boxes})):
        a = patched.run(image, task, max_new_tokens=10, num_beams=3, use_cache=False, **kw)
        b = plain.run(image, task, max_new_tokens=10, num_beams=3, use_cache=False, **kw)
        assert a.output_tokens == b.output_tokens


@pytest.mark.parametrize(("device", "applies"), [("cpu", True), ("cuda", False), ("cuda:1", False), ("mps", False)])
def test_beam_sharing_is_applied_on_the_cpu_only(device, applies):
    """Its row comparison is a host-device sync per projection on a GPU: CPU only."""
    assert speed.beam_sharing_applies(device) is applies


def test_cpu_load_shares_beam_work(tiny_checkpoint, monkeypatch):
    monkeypatch.setenv("FLORENCE_UI_GEMM_TUNING", "0")
    net = load_model(str(tiny_checkpoint), device="cpu", dtype="float32").model
    projections = [layer.encoder_attn.k_proj.forward for layer in net.model.language_model.decoder.layers]
    assert projections and all(isinstance(p, speed.DedupRowsLinear) for p in projections)


def test_weight_first_gemms_keep_answers_and_scores(tiny_checkpoint, monkeypatch):
    """Forced on for every small row count (the tiny shapes would not choose it), answers must not move."""
    from PIL import Image
    from transformers import Florence2ForConditionalGeneration

    from florence_ui import FlorenceEngine
    from florence_ui.model.loading import LoadedModel

    monkeypatch.setattr(speed, "MIN_GAIN", 0.0)  # "faster" whenever it is not slower by more than ∞
    monkeypatch.setenv("FLORENCE_UI_GEMM_TUNING", "0")
    plain = FlorenceEngine.from_pretrained(str(tiny_checkpoint), device="cpu", dtype="float32")
    tuned_model = Florence2ForConditionalGeneration.from_pretrained(str(tiny_checkpoint)).eval()
    speed.share_beam_work(tuned_model)
    chosen = speed.weight_first_small_gemms(tuned_model)
    assert chosen and all(rows == list(speed.SMALL_ROWS) for rows in chosen.values())
    assert isinstance(tuned_model.lm_head.forward, speed.WeightFirstLinear)
    tuned = FlorenceEngine(LoadedModel(tuned_model, plain.processor, "tuned", None, "cpu", torch.float32))
    assert not isinstance(plain.model.lm_head.forward, speed.WeightFirstLinear)
    for model in (plain.model, tuned_model):
        model.generation_config.min_new_tokens = 10
    image = Image.new("RGB", (120, 90), (30, 140, 220))
    for beams, boxes in ((3, None), (1, None), (3, [[5, 5, 60, 60], [40, 20, 110, 80]])):
        task = "<REGION_TO_CATEGORY>" if boxes else "<CAPTION>"
        a = plain.run(image, task, boxes=boxes, max_new_tokens=10, num_beams=beams)
        b = tuned.run(image, task, boxes=boxes, max_new_tokens=10, num_beams=beams)
        assert [[t[0] for t in row] for row in a.output_tokens] == [[t[0] for t in row] for row in b.output_tokens]
        probs = [(x[2], y[2]) for ra, rb in zip(a.output_tokens, b.output_tokens, strict=True)
                 for x, y in zip(ra, rb, strict=True) if x[2] is not None]  # fmt: skip
        assert max(abs(x - y) for x, y in probs) < 1e-4


def test_int8_engine_says_so(tiny_checkpoint):
    from florence_ui import FlorenceEngine

    engine = FlorenceEngine.from_pretrained(str(tiny_checkpoint), device="cpu", dtype="int8")
    assert engine.dtype_name.startswith("int8") and "int8" in engine.describe()
    assert any("quantized.dynamic" in type(m).__module__ for m in engine.model.modules())
