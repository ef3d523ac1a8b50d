"""A tiny, randomly initialised Florence-2 built offline (test double, never product code).

It has Florence-2's real architecture in toy sizes (DaViT vision tower + BART),
a byte-level BPE tokenizer with the 1000 ``<loc_N>`` tokens and the task
tokens, and the real processor class with a 64×64 image processor, saved with
``save_pretrained`` so tests drive the real ``from_pretrained → generate →
decode → parse`` path. Its answers are noise: assert plumbing here, meaning on
the golden outputs. ``build_full_size`` makes Florence-2-base/large-sized
random models for honest benchmarks.
"""

from __future__ import annotations

from pathlib import Path

POST_PROCESSOR_CONFIG = {
    "ocr": {"area_threshold": 0.0},
    "phrase_grounding": {"banned_grounding_tokens": ["the image"]},
    "pure_text": {},
    "description_with_bboxes": {},
    "description_with_polygons": {},
    "polygons": {},
    "bboxes": {},
    "description_with_bboxes_or_polygons": {},
}

EXTRA_TOKENS = [f"<loc_{i}>" for i in range(1000)] + [
    "<od>", "</od>", "<ocr>", "</ocr>", "<cap>", "</cap>", "<ncap>", "</ncap>", "<dcap>", "</dcap>",
    "<grounding>", "</grounding>", "<seg>", "</seg>", "<sep>", "<region_cap>", "</region_cap>",
    "<region_to_desciption>", "</region_to_desciption>", "<proposal>", "</proposal>", "<poly>", "</poly>", "<and>",
]  # fmt: skip


def build_processor(image_size: int = 64):
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import BartTokenizer, Florence2Processor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for ch in sorted(ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    vocab["<mask>"] = len(vocab)
    tokenizer = BartTokenizer(vocab=vocab, merges=[], extra_special_tokens={"image_token": "<image>"})
    tokenizer.add_tokens(EXTRA_TOKENS, special_tokens=False)
    side = image_size // 32  # DaViT downsamples by 4·2·2·2
    image_processor = CLIPImageProcessorPil(
        size={"height": image_size, "width": image_size},
        crop_size={"height": image_size, "width": image_size},
        do_center_crop=False,
        image_seq_length=side * side + 1,
    )
    return Florence2Processor(
        image_processor=image_processor, tokenizer=tokenizer, post_processor_config=POST_PROCESSOR_CONFIG
    )


def _save(processor, text_config: dict, vision_config: dict, out: Path, seed: int) -> Path:
    import torch
    from transformers import BartConfig, Florence2Config, Florence2ForConditionalGeneration

    tok = processor.tokenizer
    text = BartConfig(
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.eos_token_id,
        forced_eos_token_id=tok.eos_token_id,
        **text_config,
    )
    config = Florence2Config(text_config=text.to_dict(), vision_config=vision_config, image_token_id=tok.image_token_id)
    torch.manual_seed(seed)
    model = Florence2ForConditionalGeneration(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_tiny(out: str | Path, seed: int = 0) -> Path:
    """Toy sizes: builds and saves in about a second."""
    processor = build_processor(64)
    text = dict(
        vocab_size=len(processor.tokenizer), d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_position_embeddings=1100,
    )  # fmt: skip
    vision = dict(
        depths=[1, 1, 1, 1], embed_dim=[8, 16, 32, 32], num_heads=[1, 2, 4, 4], num_groups=[1, 2, 4, 4],
        window_size=2, projection_dim=32, drop_path_rate=0.0,
    )  # fmt: skip
    return _save(processor, text, vision, Path(out), seed)


def build_full_size(out: str | Path, size: str = "base", seed: int = 0) -> Path:
    """Florence-2-base or -large architecture with random weights (same compute as the real one)."""
    processor = build_processor(768)
    if size == "base":
        vision = dict(embed_dim=[128, 256, 512, 1024], num_heads=[4, 8, 16, 32], num_groups=[4, 8, 16, 32])
        text = dict(d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
                    decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072)  # fmt: skip
        vision["projection_dim"] = 768
    elif size == "large":
        vision = dict(embed_dim=[256, 512, 1024, 2048], num_heads=[8, 16, 32, 64], num_groups=[8, 16, 32, 64])
        text = dict(d_model=1024, encoder_layers=12, decoder_layers=12, encoder_attention_heads=16,
                    decoder_attention_heads=16, encoder_ffn_dim=4096, decoder_ffn_dim=4096)  # fmt: skip
        vision["projection_dim"] = 1024
    else:
        raise ValueError(size)
    vision |= dict(depths=[1, 1, 9, 1], window_size=12, drop_path_rate=0.0)
    # the real vocabulary is 51289 tokens + <image>; our byte-level one is smaller, the head is not
    text |= dict(vocab_size=51290, max_position_embeddings=1026)
    return _save(processor, text, vision, Path(out), seed)
