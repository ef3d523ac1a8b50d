"""The only code that imports torch / transformers: loading, download, prompts, generation, scoring,
parsing, the engine, tiling and the speed patches."""
