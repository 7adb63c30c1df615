"""The launched app on a free loopback port, driven through gradio_client like a remote browser:
preset fill, config preview, Start, poll until steps appear, a second client sees the same job, Stop."""
import socket
import time

import pytest
from gradio_client import Client

from tests.conftest import qa_records, write_jsonl
from tests.test_webui import form
from webui.app import build_app, launch

DEADLINE_S = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    demo, ctx = build_app(tmp_path_factory.mktemp("runs"))
    port = free_port()
    launch(demo, host="127.0.0.1", port=port, block=False, quiet=True)
    yield f"http://127.0.0.1:{port}/", ctx
    ctx.runner.stop()
    ctx.runner.wait(DEADLINE_S)
    demo.close()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("data") / "qa.jsonl", qa_records(12))


def poll_until(client: Client, predicate, what: str):
    """Call /poll until predicate(outputs) holds; a tick with nothing new returns update stubs."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        outputs = client.predict("en", api_name="/poll")
        if predicate(outputs):
            return outputs
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def points(outputs) -> int:
    plot = outputs[0]
    return len(plot["data"]) if isinstance(plot, dict) and "data" in plot else 0


def test_preset_and_preview_endpoints(server, dataset, tiny_model_dir):
    url, _ = server
    client = Client(url, verbose=False)
    filled = client.predict("small-data", api_name="/fill_preset")
    assert "cosine" in filled and filled[-1]  # layerwise_lr and the description
    code, error = client.predict("en", *form(tiny_model_dir, dataset, "preview"), api_name="/preview_config")
    assert error == "" and code["visible"] and "lora_rank: 4" in code["value"]


def test_start_poll_stop_through_the_client(server, dataset, tiny_model_dir):
    url, ctx = server
    client = Client(url, verbose=False)
    message, error = client.predict("en", *form(tiny_model_dir, dataset, "via-client"), api_name="/start")
    assert error == "" and "via-client" in message

    outputs = poll_until(client, lambda out: points(out) >= 2, "step points in the loss plot")
    assert outputs[0]["datatypes"] == {"step": "quantitative", "loss": "quantitative", "series": "nominal"}

    # A second browser (new session) re-attaches to the same job; a second Start is refused.
    other = Client(url, verbose=False)
    seen = other.predict("en", api_name="/poll")
    assert "via-client" in seen[1] and points(seen) >= 2
    _, error = other.predict("en", *form(tiny_model_dir, dataset, "second"), api_name="/start")
    assert "already running" in error

    message, _ = client.predict("en", api_name="/stop")
    assert "via-client" in message
    poll_until(client, lambda out: isinstance(out[1], str) and "stopped" in out[1], "the stopped status")
    assert (ctx.runs_dir / "via-client" / "adapter" / "adapter_config.json").is_file()
