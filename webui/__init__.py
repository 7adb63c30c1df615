"""LoRA Tailor's web UI (Gradio). Run it with `python -m webui`."""

import os

# Gradio's usage telemetry is off: a workbench for private data must not phone home.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
