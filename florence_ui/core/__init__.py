"""Pure data: the task table, geometry, results, labels, review state, images, limits, field names.

Imports none of torch, transformers, gradio or label_studio_sdk (import-linter holds it)."""
