"""Builds the page from the tab modules and launches it.

Binding, authentication and upload limits are decided in webui/__main__.py; this module only
assembles gr.Blocks and passes the launch settings gradio 6 takes in launch() (theme, css).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from webui import i18n
from webui.context import AppContext, relabel
from webui.tabs import chat, data, export, runs, top, train

POLL_INTERVAL_S = 1.0
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
#lt-length-report table { font-size: 0.85em; }
#lt-length-report th, #lt-length-report td { padding: 4px 8px; white-space: nowrap; }
"""

# System fonts only: the page must render offline and without requests to font CDNs.
THEME = gr.themes.Soft(primary_hue="indigo", font=["ui-sans-serif", "system-ui", "sans-serif"],
                       font_mono=["ui-monospace", "Consolas", "monospace"])

TABS = (data, train, chat, runs, export)


def build_app(runs_dir: str | Path = "runs") -> tuple[gr.Blocks, AppContext]:
    ctx = AppContext.create(runs_dir)
    c = ctx.c
    with gr.Blocks(title="LoRA Tailor", analytics_enabled=False) as demo:
        top.build(ctx)
        with gr.Tabs():
            tabs = {}
            for module, key in zip(TABS, ("tab.data", "tab.train", "tab.chat", "tab.runs", "tab.export")):
                with ctx.text(gr.Tab(i18n.t(key), id=key, elem_id=f"lt-{key.replace('.', '-')}"), key) as tab:
                    module.build(ctx)
                tabs[key] = tab
        for module in TABS:
            module.wire(ctx)

        labelled = [component for component, _, _ in ctx.labels]
        c["lang"].change(lambda lang: relabel(ctx, lang), inputs=c["lang"], outputs=labelled,
                         api_visibility="private")

        timer = gr.Timer(POLL_INTERVAL_S)
        timer.tick(lambda lang, seen: train.poll(ctx, lang, seen), inputs=[c["lang"], c["seen"]],
                   outputs=train.poll_outputs(ctx), api_name="poll", concurrency_limit=None,
                   show_progress="hidden")

        # Lists that change while the server runs are refreshed when a tab is opened.
        chat_refresh = (lambda lang, cur, known: chat.refresh_runs(ctx, lang, cur, known),
                        [c["lang"], c["chat_run"], c["chat_known"]], [c["chat_run"], c["chat_known"]])
        tabs["tab.chat"].select(*chat_refresh, api_visibility="private")
        tabs["tab.runs"].select(lambda lang, sel, ov: runs.refresh(ctx, lang, sel, ov),
                                inputs=[c["lang"], c["runs_select"], c["runs_overlay"]],
                                outputs=[c["runs_table"], c["runs_overlay"], c["runs_select"]],
                                api_visibility="private")
        tabs["tab.export"].select(lambda cur: export.refresh(ctx, cur), inputs=c["export_run"],
                                  outputs=c["export_run"], api_visibility="private")

        # A page (re)load shows the server's state as it is now, not as it was when the app was built.
        refresh_data, data_inputs, data_outputs = data.on_load(ctx)
        demo.load(refresh_data, inputs=data_inputs, outputs=data_outputs, api_visibility="private")
        demo.load(*chat_refresh, api_visibility="private")
        demo.load(lambda cur: export.refresh(ctx, cur), inputs=c["export_run"], outputs=c["export_run"],
                  api_visibility="private")
        demo.load(lambda lang, *a: train.plan_view(ctx, lang, *a), inputs=[c["lang"], *train.config_components(ctx)],
                  outputs=c["plan"], api_visibility="private")
    return demo, ctx


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           auth: list[tuple[str, str]] | None = None, block: bool = True, quiet: bool = False) -> Any:
    """Start the server. Callers decide whether host/share are safe (see webui.__main__.check_launch)."""
    return demo.queue(default_concurrency_limit=1).launch(
        server_name=host, server_port=port, share=share, auth=auth or None,
        auth_message="LoRA Tailor" if auth else None, max_file_size=MAX_FILE_SIZE,
        prevent_thread_lock=not block, quiet=quiet, show_error=False, ssr_mode=False,
        theme=THEME, css=CSS, inbrowser=False,
        run_history=False,  # it would keep every call (timer ticks included) in the browser
    )
