"""Builds the page from the tab modules and launches it.

Binding, authentication and upload limits are decided in webui/__main__.py; this module only
assembles gr.Blocks and passes the launch settings gradio 6 takes in launch() (theme, css).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from webui import i18n
from webui.context import AppContext
from webui.tabs import chat, data, export, runs, top, train

MAX_FILE_SIZE = "50mb"  # a dataset upload; chat datasets of this size hold ~100k conversations

CSS = """
#lt-top h1 { margin: 0.2em 0 0 0; }
#lt-subtitle p { margin: 0; color: var(--body-text-color-subdued); }
#lt-preset-desc, #lt-preset-desc p { font-size: 0.9em; color: var(--body-text-color-subdued); }
.lt-error { border: 1px solid #e5a3a3; background: #fdf0f0; color: #8a1f1f; border-radius: 8px;
            padding: 8px 12px; margin: 4px 0; }
.lt-error pre { white-space: pre-wrap; margin: 6px 0 0 0; font-size: 0.88em; background: none;
                color: inherit; border: none; padding: 0; }
.lt-note { border: 1px solid #a9d3b5; background: #eff9f2; color: #1d5a31; border-radius: 8px;
           padding: 6px 12px; margin: 4px 0; }
#lt-log textarea { font-family: ui-monospace, monospace; font-size: 0.8em; }
#lt-progress { font-size: 1.05em; }
#lt-start-why p { margin: 0; color: var(--body-text-color-subdued); }
#lt-length-report table { font-size: 0.85em; }
#lt-length-report th, #lt-length-report td { padding: 4px 8px; white-space: nowrap; }
#lt-aug-table .cell-wrap, #lt-aug-table .cell-wrap span { white-space: pre-line; }  /* a phrasing a line */
"""

# System fonts only: the page must render offline and without requests to font CDNs.
THEME = gr.themes.Soft(
    primary_hue="indigo",
    font=["ui-sans-serif", "system-ui", "sans-serif"],
    font_mono=["ui-monospace", "Consolas", "monospace"],
)

TABS = {"tab.data": data, "tab.train": train, "tab.chat": chat, "tab.runs": runs, "tab.export": export}


def build_app(runs_dir: str | Path = "runs") -> tuple[gr.Blocks, AppContext]:
    with gr.Blocks(title="LoRA Tailor", analytics_enabled=False) as demo:
        ctx = AppContext.create(runs_dir, page=demo)
        top.build(ctx)
        with ctx.add("tabs", gr.Tabs()):  # named: a button may switch tabs (gr.update(selected=key))
            for key, module in TABS.items():
                with ctx.text(gr.Tab(i18n.t(key), id=key, elem_id=f"lt-{key.replace('.', '-')}"), key):
                    module.build(ctx)
        for module in (top, *TABS.values()):  # once every component exists: events may reach across tabs
            module.wire(ctx)
    return demo, ctx


def launch(
    demo: gr.Blocks,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    auth: list[tuple[str, str]] | None = None,
    block: bool = True,
    quiet: bool = False,
) -> Any:
    """Start the server. Callers decide whether host/share are safe (see webui.__main__.check_launch)."""
    return demo.queue(default_concurrency_limit=1).launch(
        server_name=host,
        server_port=port,
        share=share,
        auth=auth or None,
        auth_message="LoRA Tailor" if auth else None,
        max_file_size=MAX_FILE_SIZE,
        prevent_thread_lock=not block,
        quiet=quiet,
        show_error=False,
        ssr_mode=False,
        theme=THEME,
        css=CSS,
        inbrowser=False,
        run_history=False,  # it would keep every call (timer ticks included) in the browser
    )
