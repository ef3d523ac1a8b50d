"""The Gradio shell: the only code that imports gradio."""
