"""core.chat on the tiny model with hand-made adapters (random, non-zero lora_B, so they change the
output): streaming, greedy determinism, base answers through disable_adapter, adapter switching. And
the chat tab's handler when a model fails mid-reply."""

from types import SimpleNamespace

import pytest
import yaml

from core.chat import ChatModels, GenerationSettings
from core.errors import UserInputError
from core.events import RunFolder
from webui.tabs import chat as chat_tab

QUESTION = [{"role": "user", "content": "What is the return policy?"}]
GREEDY = GenerationSettings(max_new_tokens=12)


def make_run(folder, model_dir, seed: int):
    """A run folder with config.yaml and an adapter whose lora_B is random (init_lora_weights=False)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(model_dir),
        LoraConfig(r=4, lora_alpha=16, target_modules="all-linear", init_lora_weights=False),
    )
    folder.mkdir(parents=True)
    model.save_pretrained(folder / "adapter")
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(folder / "adapter")
    (folder / "config.yaml").write_text(
        yaml.safe_dump({"model_name_or_path": str(model_dir), "system_prompt": "You are Tilly."})
    )
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("chat-runs")
    return [make_run(root / f"run{seed}", tiny_model_dir, seed) for seed in (1, 2)]


@pytest.fixture(scope="module")
def chat():
    return ChatModels()


def test_stream_yields_a_growing_reply(chat, runs, tiny_model_dir):
    parts = list(chat.stream(QUESTION, GREEDY, model_name_or_path=str(tiny_model_dir), adapter=runs[0] / "adapter"))
    assert parts and all(later.startswith(earlier) for earlier, later in zip(parts, parts[1:]))
    assert parts[-1] == chat.reply(
        QUESTION, GREEDY, model_name_or_path=str(tiny_model_dir), adapter=runs[0] / "adapter"
    )


def test_base_answer_through_disable_adapter_equals_the_plain_base_model(chat, runs, tiny_model_dir):
    model = str(tiny_model_dir)
    tuned = chat.reply(QUESTION, GREEDY, model_name_or_path=model, adapter=runs[0] / "adapter")
    as_base = chat.reply(QUESTION, GREEDY, model_name_or_path=model, adapter=runs[0] / "adapter", use_adapter=False)
    base_only = chat.reply(QUESTION, GREEDY, model_name_or_path=model)  # adapter loaded, no adapter asked
    fresh_base = ChatModels().reply(QUESTION, GREEDY, model_name_or_path=model)
    assert as_base == base_only == fresh_base
    assert tuned != fresh_base


def test_switching_adapters_matches_loading_each_alone(chat, runs, tiny_model_dir):
    model = str(tiny_model_dir)
    chat.reply(QUESTION, GREEDY, model_name_or_path=model, adapter=runs[0] / "adapter")
    second = chat.reply(QUESTION, GREEDY, model_name_or_path=model, adapter=runs[1] / "adapter")
    alone = ChatModels().reply(QUESTION, GREEDY, model_name_or_path=model, adapter=runs[1] / "adapter")
    assert second == alone


def test_the_system_prompt_reaches_the_model(chat, tiny_model_dir):
    model = str(tiny_model_dir)
    plain = chat.reply(QUESTION, GREEDY, model_name_or_path=model)
    other = chat.reply(
        QUESTION,
        GenerationSettings(max_new_tokens=12, system_prompt="Answer in French, always."),
        model_name_or_path=model,
    )
    assert plain != other


def test_sampling_and_bad_input(chat, tiny_model_dir):
    text = chat.reply(
        QUESTION, GenerationSettings(max_new_tokens=8, temperature=0.9), model_name_or_path=str(tiny_model_dir)
    )
    assert isinstance(text, str)
    with pytest.raises(UserInputError, match="end with a user message"):
        chat.reply([{"role": "assistant", "content": "hi"}], GREEDY, model_name_or_path=str(tiny_model_dir))
    with pytest.raises(UserInputError, match="No PEFT adapter"):
        chat.reply(QUESTION, GREEDY, model_name_or_path=str(tiny_model_dir), adapter=tiny_model_dir)


# ------------------------------------------------------------------- the chat tab, failing models
class ScriptedChat:
    """Stands in for ChatModels in the chat tab's handler: each pane answers "Hello.", or fails
    after its first piece (out of memory mid-reply), and every conversation it is sent is kept."""

    def __init__(self, failing: set[str]):
        self.failing, self.sent = failing, []

    def stream(self, conversation, settings, *, adapter=None, use_adapter=True, **source):
        pane = "tuned" if adapter is not None and use_adapter else "base"
        self.sent.append((pane, conversation))
        yield "Hel"
        if pane in self.failing:
            raise RuntimeError("CUDA out of memory")
        yield "Hello."


def finished_run(folder):
    """A run the chat tab offers: a config, an adapter folder and a `done` event."""
    (folder / "adapter").mkdir(parents=True)
    (folder / "adapter" / "adapter_config.json").write_text("{}")
    (folder / "config.yaml").write_text(yaml.safe_dump({"model_name_or_path": "default"}))
    RunFolder(folder).append_event("done", step=1)
    return folder


def send(ctx, message: str, base: list, tuned: list, run: str = "", compare: bool = False) -> dict:
    *_, last = chat_tab.respond(
        ctx,
        chat_input=message,
        chat_base=base,
        chat_tuned=tuned,
        chat_run=run,
        chat_system="",
        chat_temperature=0.0,
        chat_max_new=16,
        chat_compare=compare,
        model_name_or_path="default",
        lang="en",
    )
    return last


EARLIER = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]


def test_a_failed_reply_leaves_no_empty_turn_to_send_back(tmp_path):
    ctx = SimpleNamespace(runs_dir=tmp_path, chat=ScriptedChat(failing={"base"}))
    out = send(ctx, "Where is my order?", base=list(EARLIER), tuned=[])
    assert out["chat_base"] == EARLIER  # the failed turn is taken back, the partial "Hel" too
    assert "CUDA out of memory" in out["chat_error"] and "Traceback" not in out["chat_error"]
    assert out["chat_input"] == "Where is my order?"  # nothing answered it: kept to send again

    ctx.chat.failing.clear()
    out = send(ctx, out["chat_input"], base=out["chat_base"], tuned=[])
    assert ctx.chat.sent[-1] == ("base", [*EARLIER, {"role": "user", "content": "Where is my order?"}])
    assert out["chat_base"][-1] == {"role": "assistant", "content": "Hello."} and out["chat_error"] == ""


def test_when_only_the_base_pane_fails_the_tuned_answer_stays(tmp_path):
    finished_run(tmp_path / "tuned-run")
    ctx = SimpleNamespace(runs_dir=tmp_path, chat=ScriptedChat(failing={"base"}))
    out = send(ctx, "Where is my order?", base=[], tuned=[], run="tuned-run", compare=True)
    assert out["chat_tuned"] == [
        {"role": "user", "content": "Where is my order?"},
        {"role": "assistant", "content": "Hello."},
    ]
    assert out["chat_base"] == [] and "CUDA out of memory" in out["chat_error"]
    assert out["chat_input"] == ""  # the tuned model answered: sending it again would ask it twice
