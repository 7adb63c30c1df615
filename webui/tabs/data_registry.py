"""Data tab, LLaMA-Factory registry: the datasets a folder's dataset_info.json registers, to choose
one or several (they become `dataset: a,b` with `dataset_dir`), and a malformed registry shown as
the error it is, not as an empty list."""

from __future__ import annotations

from typing import Any

import gradio as gr

from core.dataset_info import registered_names
from core.errors import UserInputError
from core.paths import resolve_dataset
from webui import i18n
from webui.context import AppContext, Updates, error_html


def list_registered(dataset_dir: str, dataset: str, lang: str) -> Updates:
    """The registered names (those of `dataset` ticked), hidden for no folder or no registry."""
    folder = (dataset_dir or "").strip()
    hidden = {"registered": gr.update(choices=[], value=[], visible=False), "registry_problems": ""}
    if not folder:
        return hidden
    try:
        names = registered_names(resolve_dataset(folder))
    except UserInputError as err:
        return {**hidden, "registry_problems": error_html(i18n.t("data.registry_bad", lang), str(err))}
    chosen = [part.strip() for part in (dataset or "").split(",") if part.strip() in names]
    return {"registered": gr.update(choices=names, value=chosen, visible=bool(names)), "registry_problems": ""}


def choose_registered(registered: list[str] | None) -> Updates:
    """The ticked names, in the registry's order, as the dataset value; none ticked changes nothing."""
    return {"dataset": ",".join(registered)} if registered else {}


def build(ctx: AppContext, form: dict[str, Any]) -> None:
    ctx.field("dataset_dir", form["dataset_dir"])
    ctx.add(
        "registered",
        gr.CheckboxGroup(
            choices=[], label=i18n.t("data.registered"), visible=False, elem_id="lt-registered", interactive=True
        ),
        text="data.registered",
    )
    ctx.add("registry_problems", gr.HTML(elem_id="lt-registry-problems"))


def wire(ctx: AppContext) -> None:
    c = ctx.c
    ctx.listen(
        [c["dataset_dir"].change, ctx.page.load],
        list_registered,
        inputs=["dataset_dir", "dataset", "lang"],
        outputs=["registered", "registry_problems"],
        api_name="list_registered",
    )
    ctx.listen(
        c["registered"].input, choose_registered, inputs=["registered"], outputs=["dataset"], api_visibility="private"
    )
