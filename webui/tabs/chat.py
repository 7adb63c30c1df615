"""Chat tab: talk to a run's tuned model, and to its base model side by side.

Generation is core.chat's; this module only keeps the two histories and streams them to the page.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import gradio as gr

from core.chat import GenerationSettings
from core.errors import UserInputError
from core.runs import RunState, list_runs
from webui import i18n
from webui.context import AppContext, Updates, error_html

BASE_ONLY = ""  # the dropdown value of "(base model only)"


def chat_runs(ctx: AppContext) -> list[RunState]:
    """Runs with an adapter that nothing is writing any more, newest first."""
    return [r for r in list_runs(ctx.runs_dir) if r.can_chat]


def find_run(ctx: AppContext, name: str | None) -> RunState | None:
    return next((r for r in chat_runs(ctx) if r.name == name), None) if name else None


def run_choices(ctx: AppContext, lang: str) -> list[tuple[str, str]]:
    return [(i18n.t("chat.base_only", lang), BASE_ONLY)] + [
        (f"{r.name} ({i18n.t(f'status.{r.status}', lang)})", r.name) for r in chat_runs(ctx)
    ]


def refresh_runs(ctx: AppContext, lang: str, chat_run: str | None, chat_known: list[str] | None) -> Updates:
    """The run selector and the run names it now knows. A run that appeared since the last refresh
    (one just trained) is selected; otherwise the selection stays."""
    choices = run_choices(ctx, lang)
    names = [value for _, value in choices if value != BASE_ONLY]
    fresh = [name for name in names if name not in (chat_known or [])]
    if fresh:
        value = fresh[0]  # newest first
    elif chat_run in names or chat_run == BASE_ONLY:
        value = chat_run
    else:
        value = names[0] if names else BASE_ONLY
    return {"chat_run": gr.update(choices=choices, value=value), "chat_known": names}


def select_run(ctx: AppContext, chat_run: str, lang: str) -> Updates:
    """The run's system prompt; both panes cleared, the tuned one labelled with the run's name."""
    run = find_run(ctx, chat_run)
    label = f"{i18n.t('chat.tuned', lang)} · {run.name}" if run else i18n.t("chat.tuned", lang)
    return {
        "chat_system": str(run.config.get("system_prompt", "")) if run else "",
        "chat_tuned": gr.update(visible=run is not None, label=label, value=[]),
        "chat_compare": gr.update(interactive=run is not None),
        "chat_base": [],
    }


def respond(
    ctx: AppContext,
    chat_input: str,
    chat_base: list,
    chat_tuned: list,
    chat_run: str,
    chat_system: str,
    chat_temperature: float,
    chat_max_new: float,
    chat_compare: bool,
    model_name_or_path: str,
    lang: str,
) -> Iterator[Updates]:
    """Stream both panes' histories (the input box emptied) as the answers come in.

    The tuned model answers first (it is what the user came for), then the base model the same
    question in its own pane, each with its own history so each sees its own earlier answers.
    A pane whose model fails gets its turn taken back (see _failed) and the panes after it are not
    asked.
    """
    message = (chat_input or "").strip()
    if not message:
        yield {"chat_error": ""}
        return
    settings = GenerationSettings(
        system_prompt=chat_system or "",
        temperature=float(chat_temperature or 0),
        max_new_tokens=int(chat_max_new or 256),
    )
    run = find_run(ctx, chat_run)
    histories = {"base": list(chat_base or []), "tuned": list(chat_tuned or [])}
    if run is None:
        source = {"model_name_or_path": (model_name_or_path or "default").strip(), "quantization_bit": "none"}
        panes = [("base", None)]
    else:
        source = {
            "model_name_or_path": str(run.config.get("model_name_or_path", "default")),
            "quantization_bit": str(run.config.get("quantization_bit", "none")),
        }
        panes = [("tuned", run.path / "adapter")] + ([("base", run.path / "adapter")] if chat_compare else [])

    def shown(error: str = "") -> Updates:
        return {"chat_input": "", "chat_base": histories["base"], "chat_tuned": histories["tuned"], "chat_error": error}

    for number, (pane, adapter) in enumerate(panes):
        history = histories[pane]
        conversation = [{"role": m["role"], "content": _text(m["content"])} for m in history]
        conversation.append({"role": "user", "content": message})
        history += [{"role": "user", "content": message}, {"role": "assistant", "content": ""}]
        yield shown()
        try:
            for text in ctx.chat.stream(conversation, settings, adapter=adapter, use_adapter=pane == "tuned", **source):
                history[-1] = {"role": "assistant", "content": text}
                yield shown()
        except Exception as err:  # noqa: BLE001 - bad input, out of memory, a broken model file: say so in the page
            nothing_answered = number == 0
            yield {**shown(_failed(history, err, lang)), "chat_input": message if nothing_answered else ""}
            return


def _failed(history: list, err: Exception, lang: str) -> str:
    """Take back a failed turn (the user's message and its empty or cut-off reply) and say why.

    Left in, the browser would send it back with the next message, and the model would be shown an
    answer it never gave. The caller puts the message back in the input box when no pane answered
    it, so it can be sent again.
    """
    del history[-2:]
    detail = str(err) if isinstance(err, UserInputError) else f"{type(err).__name__}: {err}"
    return error_html(i18n.t("chat.error", lang), detail)


def clear() -> Updates:
    return {"chat_base": [], "chat_tuned": [], "chat_error": ""}


def _text(content: Any) -> str:
    """Chatbot history content may come back as a list of parts from the browser."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def build(ctx: AppContext) -> None:
    runs = chat_runs(ctx)
    with gr.Row(equal_height=True):
        ctx.add(
            "chat_run",
            gr.Dropdown(
                choices=run_choices(ctx, "en"),
                value=runs[0].name if runs else BASE_ONLY,
                label=i18n.t("chat.run"),
                info=i18n.t("chat.run.info"),
                scale=3,
                elem_id="lt-chat-run",
            ),
            text="chat.run",
        )
        ctx.add(
            "chat_refresh", gr.Button(i18n.t("chat.refresh"), scale=0, min_width=110, size="sm"), text="chat.refresh"
        )
        ctx.add(
            "chat_temperature",
            gr.Slider(
                0,
                1.5,
                value=0.0,
                step=0.05,
                label=i18n.t("chat.temperature"),
                info=i18n.t("chat.temperature.info"),
                scale=2,
            ),
            text="chat.temperature",
        )
        ctx.add(
            "chat_max_new",
            gr.Slider(16, 1024, value=200, step=8, label=i18n.t("chat.max_new_tokens"), scale=2),
            text="chat.max_new_tokens",
        )
    with gr.Row(equal_height=True):
        ctx.add(
            "chat_system",
            gr.Textbox(
                value=str(runs[0].config.get("system_prompt", "")) if runs else "",
                label=i18n.t("chat.system"),
                info=i18n.t("chat.system.info"),
                scale=4,
                elem_id="lt-chat-system",
            ),
            text="chat.system",
        )
        ctx.add(
            "chat_compare",
            gr.Checkbox(value=True, label=i18n.t("chat.compare"), scale=2, interactive=bool(runs)),
            text="chat.compare",
        )
    with gr.Row():
        # Its label names the run (select_run sets it), so it is not relabelled with the language.
        tuned = f"{i18n.t('chat.tuned')} · {runs[0].name}" if runs else i18n.t("chat.tuned")
        ctx.add("chat_tuned", gr.Chatbot(label=tuned, height=420, visible=bool(runs), elem_id="lt-chat-tuned"))
        ctx.add(
            "chat_base", gr.Chatbot(label=i18n.t("chat.base"), height=420, elem_id="lt-chat-base"), text="chat.base"
        )
    ctx.add("chat_error", gr.HTML())
    ctx.add("chat_known", gr.State([r.name for r in runs]))
    with gr.Row(equal_height=True):
        ctx.add(
            "chat_input",
            gr.Textbox(
                label=i18n.t("chat.input"), placeholder=i18n.t("chat.placeholder"), scale=6, elem_id="lt-chat-input"
            ),
            text="chat.input",
        )
        ctx.add(
            "chat_send",
            gr.Button(i18n.t("chat.send"), variant="primary", scale=1, elem_id="lt-chat-send"),
            text="chat.send",
        )
        ctx.add("chat_clear", gr.Button(i18n.t("chat.clear"), scale=1), text="chat.clear")


def wire(ctx: AppContext) -> None:
    c = ctx.c
    refresh = {
        "handler": partial(refresh_runs, ctx),
        "inputs": ["lang", "chat_run", "chat_known"],
        "outputs": ["chat_run", "chat_known"],
    }
    ctx.listen(c["chat_refresh"].click, **refresh, api_name="chat_runs")
    # The list changes while the server runs (a run finishes): refreshed when the tab or page opens.
    ctx.listen([c["tab.chat"].select, ctx.page.load], **refresh, api_visibility="private")
    ctx.listen(
        c["chat_run"].change,
        partial(select_run, ctx),
        inputs=["chat_run", "lang"],
        outputs=["chat_system", "chat_tuned", "chat_compare", "chat_base"],
        api_visibility="private",
    )
    ctx.listen(
        [c["chat_send"].click, c["chat_input"].submit],
        partial(respond, ctx),
        inputs=[
            "chat_input",
            "chat_base",
            "chat_tuned",
            "chat_run",
            "chat_system",
            "chat_temperature",
            "chat_max_new",
            "chat_compare",
            "model_name_or_path",
            "lang",
        ],
        outputs=["chat_input", "chat_base", "chat_tuned", "chat_error"],
        api_name="chat",
    )
    ctx.listen(
        c["chat_clear"].click, clear, outputs=["chat_base", "chat_tuned", "chat_error"], api_visibility="private"
    )
