"""A tiny, randomly initialised SAM built offline (test double, never product code).

SAM's real architecture (ViT image encoder, prompt encoder, two-way mask
decoder) at toy sizes, with the real ``SamProcessor`` and its PIL image
processor sized to match (64 px input, 4×4 embedding, 16×16 low-res masks),
saved with ``save_pretrained`` so tests drive the real ``from_pretrained →
embed → prompt → post-process`` path. Its masks are noise: assert shapes and
plumbing, never mask quality. ``build_full_size`` makes SAM-ViT-B-sized (or
SlimSAM-50-sized) random models for honest benchmarks.
"""

from __future__ import annotations

from pathlib import Path


def _processor(image_size: int):
    from transformers import SamProcessor
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    low = image_size // 4  # the mask decoder up-samples the patch grid 4x
    image_processor = SamImageProcessorPil(
        size={"longest_edge": image_size},
        pad_size={"height": image_size, "width": image_size},
        mask_size={"longest_edge": low},
        mask_pad_size={"height": low, "width": low},
    )
    return SamProcessor(image_processor=image_processor)


def _save(config, processor, out: Path, seed: int) -> Path:
    import torch
    from transformers import SamModel

    torch.manual_seed(seed)
    model = SamModel(config).eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_tiny(out: str | Path, seed: int = 0) -> Path:
    """A ~200 KB SAM: hidden 32, 2 encoder layers, 64 px input (patch 16 → 4×4 embedding)."""
    from transformers import SamConfig

    size = 64
    vision = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": size,
              "patch_size": 16, "output_channels": 32, "window_size": 2, "global_attn_indexes": [1],
              "mlp_dim": 64, "num_pos_feats": 16, "initializer_range": 0.02}  # fmt: skip
    prompt = {"hidden_size": 32, "image_size": size, "patch_size": 16, "mask_input_channels": 4}
    decoder = {"hidden_size": 32, "mlp_dim": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
               "iou_head_hidden_dim": 32}  # fmt: skip
    config = SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
    return _save(config, _processor(size), Path(out), seed)


def full_size_config(size: str = "base"):
    """SAM's published architecture at full size: ``base`` (SAM-ViT-B) or ``slimsam`` (SlimSAM-50, width 384).

    ``SamVisionConfig`` initialises its weights with std 1e-10: random activations then sink into
    denormal floats, which CPUs compute 10x slower (a padded 640×480 image took 36 s instead of 3.6 s).
    Trained weights are nowhere near that, so the stand-in uses std 0.02 like the rest of SAM.
    """
    from transformers import SamConfig

    vision = {"base": {}, "slimsam": {"hidden_size": 384, "mlp_dim": 1536},
              "large": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                        "global_attn_indexes": [5, 11, 17, 23]}}[size]  # fmt: skip
    return SamConfig(vision_config={**vision, "initializer_range": 0.02})


def build_full_size(out: str | Path, size: str = "base", seed: int = 0) -> Path:
    """A random SAM with the real checkpoint's architecture and 1024 px processor: the real compute."""
    return _save(full_size_config(size), _processor(1024), Path(out), seed)
