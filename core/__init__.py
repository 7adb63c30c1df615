"""LoRA Tailor's engine: config, data, templates, training, analysis. Never imports gradio."""
