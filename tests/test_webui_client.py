"""The launched app on a free loopback port, driven through gradio_client like a remote browser:
preset fill, config preview, Start, poll until steps appear, a second client sees the same job, Stop.
Endpoints take their inputs by component name, as the handlers do."""

import gradio as gr
import pytest
from gradio_client import Client

from tests.webui_helpers import DEADLINE_S, form, free_port, output_names, wait_for
from webui.app import build_app, launch
from webui.context import AppContext


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    demo, ctx = build_app(tmp_path_factory.mktemp("runs"))
    port = free_port()
    launch(demo, host="127.0.0.1", port=port, block=False, quiet=True)
    yield f"http://127.0.0.1:{port}/", demo, ctx
    ctx.runner.stop()
    ctx.runner.wait(DEADLINE_S)
    demo.close()


def call(client: Client, server, api_name: str, **inputs) -> dict:
    """An endpoint's outputs by component name; one it left unchanged reads {'__type__': 'update'}."""
    _, demo, ctx = server
    return dict(zip(output_names(demo, ctx, api_name), client.predict(**inputs, api_name=f"/{api_name}")))


def points(plot) -> int:
    return len(plot["data"]) if isinstance(plot, dict) and "data" in plot else 0


def test_preset_and_preview_endpoints(server, dataset, tiny_model_dir):
    client = Client(server[0], verbose=False)
    filled = call(client, server, "fill_preset", preset="small-data")
    assert filled["layerwise_lr"] == "cosine" and filled["preset_desc"]
    out = call(client, server, "preview_config", lang="en", **form(tiny_model_dir, dataset, "preview"))
    assert out["train_error"] == "" and out["config_yaml"]["visible"] and "lora_rank: 4" in out["config_yaml"]["value"]


def test_start_poll_stop_through_the_client(server, dataset, tiny_model_dir):
    url, _, ctx = server
    client = Client(url, verbose=False)
    out = call(client, server, "start", lang="en", **form(tiny_model_dir, dataset, "via-client"))
    assert out["train_error"] == "" and "via-client" in out["train_msg"]

    def poll(who: Client) -> dict:
        return call(who, server, "poll", lang="en")  # seen and form_ok are session state: not API inputs

    out = wait_for(
        lambda: (lambda o: points(o["loss_plot"]) >= 2 and o)(poll(client)),
        "step points in the loss plot",
        interval_s=0.5,
    )
    assert out["loss_plot"]["datatypes"] == {"step": "quantitative", "loss": "quantitative", "series": "nominal"}

    # A second browser (new session) re-attaches to the same job; a second Start is refused.
    other = Client(url, verbose=False)
    seen = poll(other)
    assert "via-client" in seen["progress"] and points(seen["loss_plot"]) >= 2
    assert "via-client" in seen["start_why"]  # why Start is off
    assert (
        "already running"
        in call(other, server, "start", lang="en", **form(tiny_model_dir, dataset, "second"))["train_error"]
    )

    assert "via-client" in call(client, server, "stop", lang="en")["train_msg"]
    wait_for(lambda: "stopped" in str(poll(client)["progress"]), "the stopped status", interval_s=0.5)
    assert (ctx.runs_dir / "via-client" / "adapter" / "adapter_config.json").is_file()


def test_listen_wires_handlers_by_component_name(tmp_path):
    """ctx.listen: inputs by name as keyword arguments, outputs by name; a name the handler leaves
    out keeps its value; generators stream; a `progress` parameter gets gradio's progress bar; a
    name that is not registered is refused at wiring."""
    with gr.Blocks() as demo:
        ctx = AppContext(runs_dir=tmp_path, runner=None, chat=None, page=demo)
        for name in ("word", "count", "echo", "kept"):
            ctx.add(name, gr.Textbox(value="as built"))

        def shout(word, count):
            return {"echo": word.upper() * int(count)}

        def spell(word):
            for i in range(1, len(word) + 1):
                yield {"echo": word[:i]}

        def count_up(word, progress=None):  # the wiring hands it the event's progress bar
            for i in range(len(word)):
                progress((i + 1, len(word)), desc="counting")
            return {"echo": f"{len(word)} letters"}

        ctx.listen(ctx.c["word"].submit, shout, inputs=["word", "count"], outputs=["echo", "kept"], api_name="shout")
        ctx.listen(ctx.c["word"].change, spell, inputs=["word"], outputs=["echo"], api_name="spell")
        ctx.listen(ctx.c["word"].input, count_up, inputs=["word"], outputs=["echo"], api_name="count_up")
        with pytest.raises(KeyError, match="nowhere"):
            ctx.listen(ctx.c["word"].blur, shout, inputs=["word", "nowhere"], outputs=["echo"])
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        echo, kept = client.predict(count=2, word="hi", api_name="/shout")
        assert echo == "HIHI" and kept == {"__type__": "update"}
        assert client.predict(word="abc", api_name="/spell") == "abc"  # the last of a, ab, abc
        assert client.predict(word="abc", api_name="/count_up") == "3 letters"  # progress= is gradio's, not an input
    finally:
        demo.close()
