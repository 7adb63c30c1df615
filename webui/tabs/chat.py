"""Chat tab: talk to a run's tuned model, and to its base model side by side.

Generation is core.chat's; this module only keeps the two histories and streams them to the page.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from core.chat import GenerationSettings
from core.errors import UserInputError
from core.runs import RunState, list_runs
from webui import i18n
from webui.context import AppContext, error_html

BASE_ONLY = ""  # the dropdown value of "(base model only)"


def chat_runs(ctx: AppContext) -> list[RunState]:
    """Runs with an adapter that nothing is writing any more, newest first."""
    return [r for r in list_runs(ctx.runs_dir) if r.can_chat]


def run_choices(ctx: AppContext, lang: str) -> list[tuple[str, str]]:
    return [(i18n.t("chat.base_only", lang), BASE_ONLY)] + [
        (f"{r.name} ({i18n.t('status.' + r.status, lang)})", r.name) for r in chat_runs(ctx)]


def refresh_runs(ctx: AppContext, lang: str, current: str | None, known: list[str] | None) -> tuple[Any, list[str]]:
    """(run selector, the run names it now knows). A run that appeared since the last refresh (one
    just trained) is selected; otherwise the selection stays."""
    choices = run_choices(ctx, lang)
    names = [value for _, value in choices if value != BASE_ONLY]
    fresh = [name for name in names if name not in (known or [])]
    if fresh:
        value = fresh[0]  # newest first
    else:
        value = current if current in names or current == BASE_ONLY else (names[0] if names else BASE_ONLY)
    return gr.update(choices=choices, value=value), names


def select_run(ctx: AppContext, name: str, lang: str) -> tuple[str, Any, Any, list]:
    """(system prompt, tuned pane, compare box, base pane): the run's system prompt, panes cleared."""
    run = next((r for r in chat_runs(ctx) if r.name == name), None) if name else None
    system = str(run.config.get("system_prompt", "")) if run else ""
    label = f"{i18n.t('chat.tuned', lang)} · {name}" if run else i18n.t("chat.tuned", lang)
    return system, gr.update(visible=run is not None, label=label, value=[]), \
        gr.update(interactive=run is not None), []


def respond(ctx: AppContext, message: str, base_history: list, tuned_history: list, run_name: str,
            system_prompt: str, temperature: float, max_new_tokens: float, compare: bool, model: str,
            lang: str) -> Iterator[tuple[str, list, list, str]]:
    """Stream ('' for the input box, base history, tuned history, error box).

    The tuned model answers first (it is what the user came for), then the base model the same
    question in its own pane, each with its own history so each sees its own earlier answers.
    """
    message = (message or "").strip()
    if not message:
        yield gr.skip(), gr.skip(), gr.skip(), ""
        return
    settings = GenerationSettings(system_prompt=system_prompt or "", temperature=float(temperature or 0),
                                  max_new_tokens=int(max_new_tokens or 256))
    run = next((r for r in chat_runs(ctx) if r.name == run_name), None) if run_name else None
    base_history, tuned_history = list(base_history or []), list(tuned_history or [])
    if run is None:
        source = {"model_name_or_path": (model or "default").strip(), "quantization_bit": "none"}
        panes = [("base", None)]
    else:
        source = {"model_name_or_path": str(run.config.get("model_name_or_path", "default")),
                  "quantization_bit": str(run.config.get("quantization_bit", "none"))}
        panes = [("tuned", run.path / "adapter")] + ([("base", run.path / "adapter")] if compare else [])
    histories = {"base": base_history, "tuned": tuned_history}
    try:
        for pane, adapter in panes:
            history = histories[pane]
            conversation = [{"role": m["role"], "content": _text(m["content"])} for m in history]
            conversation.append({"role": "user", "content": message})
            history += [{"role": "user", "content": message}, {"role": "assistant", "content": ""}]
            yield "", base_history, tuned_history, ""
            for text in ctx.chat.stream(conversation, settings, adapter=adapter, use_adapter=pane == "tuned",
                                        **source):
                history[-1] = {"role": "assistant", "content": text}
                yield "", base_history, tuned_history, ""
    except UserInputError as err:
        yield "", base_history, tuned_history, error_html(i18n.t("chat.error", lang), str(err))
    except Exception as err:  # noqa: BLE001 - out of memory, a broken model file: say so in the page
        yield "", base_history, tuned_history, error_html(i18n.t("chat.error", lang), f"{type(err).__name__}: {err}")


def _text(content: Any) -> str:
    """Chatbot history content may come back as a list of parts from the browser."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def build(ctx: AppContext) -> None:
    c = ctx.c
    runs = chat_runs(ctx)
    with gr.Row(equal_height=True):
        c["chat_run"] = ctx.text(gr.Dropdown(choices=run_choices(ctx, "en"), value=runs[0].name if runs else BASE_ONLY,
                                             label=i18n.t("chat.run"), info=i18n.t("chat.run.info"), scale=3,
                                             elem_id="lt-chat-run"), "chat.run")
        c["chat_refresh"] = ctx.text(gr.Button(i18n.t("chat.refresh"), scale=0, min_width=110, size="sm"), "chat.refresh")
        c["chat_temperature"] = ctx.text(gr.Slider(0, 1.5, value=0.0, step=0.05, label=i18n.t("chat.temperature"),
                                                   info=i18n.t("chat.temperature.info"), scale=2), "chat.temperature")
        c["chat_max_new"] = ctx.text(gr.Slider(16, 1024, value=200, step=8, label=i18n.t("chat.max_new_tokens"),
                                               scale=2), "chat.max_new_tokens")
    with gr.Row(equal_height=True):
        c["chat_system"] = ctx.text(gr.Textbox(value=str(runs[0].config.get("system_prompt", "")) if runs else "",
                                               label=i18n.t("chat.system"), info=i18n.t("chat.system.info"),
                                               scale=4, elem_id="lt-chat-system"), "chat.system")
        c["chat_compare"] = ctx.text(gr.Checkbox(value=True, label=i18n.t("chat.compare"), scale=2,
                                                 interactive=bool(runs)), "chat.compare")
    with gr.Row():
        c["chat_tuned"] = gr.Chatbot(label=f"{i18n.t('chat.tuned')} · {runs[0].name}" if runs else i18n.t("chat.tuned"),
                                     height=420, visible=bool(runs), elem_id="lt-chat-tuned")
        c["chat_base"] = ctx.text(gr.Chatbot(label=i18n.t("chat.base"), height=420, elem_id="lt-chat-base"),
                                  "chat.base")
    c["chat_error"] = gr.HTML()
    c["chat_known"] = gr.State([r.name for r in runs])
    with gr.Row(equal_height=True):
        c["chat_input"] = ctx.text(gr.Textbox(label=i18n.t("chat.input"), placeholder=i18n.t("chat.placeholder"),
                                              scale=6, elem_id="lt-chat-input"), "chat.input")
        c["chat_send"] = ctx.text(gr.Button(i18n.t("chat.send"), variant="primary", scale=1, elem_id="lt-chat-send"),
                                  "chat.send")
        c["chat_clear"] = ctx.text(gr.Button(i18n.t("chat.clear"), scale=1), "chat.clear")


def wire(ctx: AppContext) -> None:
    c = ctx.c
    c["chat_refresh"].click(lambda lang, cur, known: refresh_runs(ctx, lang, cur, known),
                            inputs=[c["lang"], c["chat_run"], c["chat_known"]],
                            outputs=[c["chat_run"], c["chat_known"]], api_name="chat_runs")
    c["chat_run"].change(lambda name, lang: select_run(ctx, name, lang), inputs=[c["chat_run"], c["lang"]],
                         outputs=[c["chat_system"], c["chat_tuned"], c["chat_compare"], c["chat_base"]],
                         api_visibility="private")
    inputs = [c["chat_input"], c["chat_base"], c["chat_tuned"], c["chat_run"], c["chat_system"],
              c["chat_temperature"], c["chat_max_new"], c["chat_compare"], c["model"], c["lang"]]
    outputs = [c["chat_input"], c["chat_base"], c["chat_tuned"], c["chat_error"]]

    def chat(*args):
        yield from respond(ctx, *args)

    gr.on([c["chat_send"].click, c["chat_input"].submit], chat, inputs=inputs, outputs=outputs, api_name="chat")
    c["chat_clear"].click(lambda: ([], [], ""), outputs=[c["chat_base"], c["chat_tuned"], c["chat_error"]],
                          api_visibility="private")
