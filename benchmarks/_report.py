"""Ratios, targets, markdown and plot for ``benchmarks/run.py``.

The harness's figures are ratios of cases measured side by side in one
process, because only ratios survive a shared, noisy machine; this module
turns the raw medians into those ratios, holds them against the issue's
targets, and writes them out for people (markdown table, plot).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: target per ratio: (comparison, bound); from the benchmark issue, for base size on a 2-core CPU
TARGETS: dict[str, tuple[str, float]] = {
    "cached_over_cold": ("<=", 0.30),
    "batch4_over_sequential4": ("<=", 0.45),
    "engine_over_reference": ("<=", 0.45),
    "decode_over_reference_per_token": ("<=", 0.40),
    "vision_efficiency": (">=", 0.60),
    "app_overhead_ratio": ("<=", 0.05),
}
#: the published GPU anchor (NVIDIA L4, greedy, 128 new tokens), for --device cuda
L4_ANCHOR_MS = {"base": 652.0, "large": 1120.0}


def ratios(fig: dict[str, Any]) -> dict[str, float | None]:
    """The five headline ratios from the raw medians (None where a case was skipped)."""

    def div(a: str, b: str) -> float | None:
        return round(fig[a] / fig[b], 3) if fig.get(a) is not None and fig.get(b) else None

    out = {
        "cached_over_cold": div("engine_cached_s", "engine_cold_s"),
        "batch4_over_sequential4": div("engine_batch4_s", "sequential4_s"),
        "engine_over_reference": div("engine_cold_s", "reference_cold_s"),
        "vision_efficiency": div("vision_gflops_per_s", "matmul_peak_gflops"),
        "decode_over_reference_per_token": div("decode_ms_per_token", "reference_decode_ms_per_token"),
        "tiled_over_sequential_tiles": div("tiled_s", "sequential_tiles_s"),
        "app_overhead_ratio": None,
    }
    if fig.get("app_e2e_s") and fig.get("app_engine_s") is not None:
        out["app_overhead_ratio"] = round((fig["app_e2e_s"] - fig["app_engine_s"]) / fig["app_e2e_s"], 3)
    return out


def judge(values: dict[str, float | None]) -> dict[str, bool | None]:
    """Met (True), missed (False) or not measured (None), per target."""
    met: dict[str, bool | None] = {}
    for key, (op, bound) in TARGETS.items():
        value = values.get(key)
        met[key] = None if value is None else (value <= bound if op == "<=" else value >= bound)
    return met


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    if isinstance(value, list):
        return " ".join(map(str, value))
    return str(value)


SECONDS = [
    ("reference_cold_s", "model-card recipe, new image (processor + generate)"),
    ("engine_cold_s", "FlorenceEngine.run, new image"),
    ("engine_cached_s", "second prompt, same image (cached features)"),
    ("engine_batch4_s", "4 region boxes in one run"),
    ("sequential4_s", "the same 4 boxes as 4 cold runs, cache off"),
    ("vision_s", "vision tower + projector alone"),
    ("long_output_s", "FlorenceEngine.run, new image, long output"),
    ("decode_ms_per_token", "engine: extra decode cost per output token (ms)"),
    ("reference_decode_ms_per_token", "recipe at the engine's dtype: extra decode cost per token (ms)"),
    ("decode_floor_ms_per_token", "memory floor per token: decoder + output weights ÷ read rate (ms)"),
    ("first_token_s", "engine.stream, cached image: first generated token visible"),
    ("tiled_s", "tiled OD (tiles + whole image batched), 1280×960"),
    ("sequential_tiles_s", "the same crops as one run each, cache off"),
    ("app_e2e_s", "/run_task through gradio_client, new image"),
    ("app_engine_s", "engine time inside those calls"),
]


def markdown(fig: dict[str, Any]) -> str:
    """The figures as the markdown the README's performance section carries."""
    s = fig["settings"]
    lines = [
        f"### Florence-2-{s['size']} ({s['params_m']} M params, random weights) on {fig['device']} · "
        f"{fig['dtype']} · {fig['system']['threads']} threads",
        "",
        f"{s['new_tokens']} new tokens per answer (fixed), {s['beams']} beams, medians of {s['repeats']} interleaved "
        f"repetitions{' (--quick)' if s['quick'] else ''}; CPU: {fig['system']['cpu']} "
        f"({fig['system']['cpu_count']} cores, flags: {' '.join(fig['system']['cpu_flags']) or 'n/a'}); "
        f"torch {fig['system']['torch']}, transformers {fig['system']['transformers']}; "
        f"load average at start {fig['system']['load_average_1m']}.",
        "",
        "| Ratio | Value | Target | Met |",
        "|---|---:|---:|:---:|",
    ]
    for key, (op, bound) in TARGETS.items():
        met = fig["targets_met"].get(key)
        mark = "–" if met is None else ("yes" if met else "**no**")
        lines.append(f"| `{key}` | {_fmt(fig.get(key))} | {op} {bound} | {mark} |")
    lines += ["", "| Case | Seconds | What |", "|---|---:|---|"]
    for key, what in SECONDS:
        if fig.get(key) is not None:
            lines.append(f"| `{key}` | {_fmt(fig[key])} | {what} |")
    lines += [
        "",
        f"Vision tower: {_fmt(fig.get('vision_gflop'))} GFLOP per image at "
        f"{_fmt(fig.get('vision_gflops_per_s'))} GFLOP/s, against a measured matmul peak of "
        f"{_fmt(fig.get('matmul_peak_gflops'))} GFLOP/s (same dtype, same threads). Peak RSS "
        f"{_fmt(fig.get('peak_rss_mb'))} MB. Engine vs reference answers: token agreement "
        f"{_fmt(fig.get('engine_reference_token_agreement'))}. Decoding reads "
        f"{_fmt(fig.get('decode_weight_mb'))} MB of weights per step at a measured "
        f"{_fmt(fig.get('memory_read_gb_per_s'))} GB/s read rate; tiled/sequential tiles: "
        f"{_fmt(fig.get('tiled_over_sequential_tiles'))}.",
    ]
    if fig.get("cuda"):
        lines += ["", cuda_markdown(fig["cuda"])]
    if fig.get("experiments"):
        lines += ["", experiments_markdown(fig["experiments"])]
    return "\n".join(lines) + "\n"


def cuda_markdown(cuda: dict[str, Any]) -> str:
    lines = [
        f"#### GPU variants ({cuda['gpu']}, greedy, {cuda['new_tokens']} new tokens, cold = new image)",
        "",
        "| Variant | Cold latency (ms) | L4 anchor (ms) | Notes |",
        "|---|---:|---:|---|",
    ]
    for row in cuda["variants"]:
        lines.append(f"| {row['variant']} | {_fmt(row.get('cold_ms'))} | {cuda['anchor_ms']} | {row.get('note', '')} |")
    lines += ["", "| Prompts per run | Seconds | Prompts/s |", "|---:|---:|---:|"]
    for row in cuda["throughput"]:
        lines.append(f"| {row['prompts']} | {_fmt(row['seconds'])} | {_fmt(row['prompts_per_s'])} |")
    return "\n".join(lines)


def experiments_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "#### CPU speed experiments (each against fp32 eager, interleaved in one process)",
        "",
        "| Variant | Case | Variant s | Baseline s | Speed-up | Top-1 agreement | Same answer | One-off cost s | Kept? |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['case']} | {_fmt(r.get('variant_s'))} | {_fmt(r.get('baseline_s'))} | "
            f"{_fmt(r.get('speedup'))} | {_fmt(r.get('top1_agreement'))} | {_fmt(r.get('same_answer'))} | "
            f"{_fmt(r.get('setup_s'))} | "
            f"{r.get('verdict', '')} |"
        )
    return "\n".join(lines)


def plot(fig: dict[str, Any], out: Path) -> None:
    """Two panels: the cases' seconds, and each ratio against its target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [(k, fig[k]) for k, _ in SECONDS if k.endswith("_s") and fig.get(k) is not None]
    left, right = plt.subplots(1, 2, figsize=(13, 4.8))[1]
    left.barh([k.removesuffix("_s") for k, _ in cases], [v for _, v in cases], color="#6366f1")
    left.invert_yaxis()
    left.set_xlabel("seconds (median)")
    s = fig["settings"]
    left.set_title(
        f"Florence-2-{s['size']} · {fig['device']} {fig['dtype']} · {s['new_tokens']} tok, {s['beams']} beams"
    )
    keys = list(TARGETS)
    values = [fig.get(k) or 0.0 for k in keys]
    colours = ["#16a34a" if fig["targets_met"].get(k) else "#dc2626" for k in keys]
    right.barh(keys, values, color=colours)
    for i, k in enumerate(keys):
        right.plot([TARGETS[k][1]] * 2, [i - 0.4, i + 0.4], color="black", linewidth=2)
    right.invert_yaxis()
    right.set_title("ratios (black line = target; green = met)")
    plt.tight_layout()
    plt.savefig(out, dpi=110)
    plt.close("all")
