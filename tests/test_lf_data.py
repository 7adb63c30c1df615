"""LLaMA-Factory's data shapes: its demo files' forms (alpaca, sharegpt with tool calls, the v1
content-parts form with loss_weight), OpenAI tool calls, and what the trainer's labels make of them.

The fixtures are small files shaped like LLaMA-Factory's data/alpaca_en_demo.json,
data/glaive_toolcall_en_demo.json and data/v1_sft_demo.jsonl. Trained tokens are checked against
text built independently of core.template: the decoded trained stretches must equal the replies
(and tool calls) with their end-of-turn marker, nothing else.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from core.data import conversation_tools, load_dataset
from core.errors import UserInputError
from core.lengths import analyze_file, main
from core.models import ModelSource, load_tokenizer
from core.template import IGNORE_INDEX, ChatEncoder
from tests.conftest import write_jsonl
from tests.test_template import trained_runs

END = "<|im_end|>"
# A ChatML template with tool support, in the shape of Qwen2.5's: the tool definitions go into the
# system turn, each call is a <tool_call> JSON line inside the assistant turn, results are "tool" turns.
TOOL_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\n"
    "{% if messages[0].role == 'system' %}{{ messages[0].content }}\n{% endif %}"
    "# Tools\n{% for tool in tools %}{{ tool | tojson }}\n{% endfor %}<|im_end|>\n"
    "{%- elif messages[0].role == 'system' %}<|im_start|>system\n{{ messages[0].content }}<|im_end|>\n"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'assistant' %}<|im_start|>assistant\n{{ message.content }}"
    "{%- for call in message.tool_calls or [] %}"
    '<tool_call>{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}</tool_call>'
    "{%- endfor %}<|im_end|>\n"
    "{%- elif message.role != 'system' %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
AREA_TOOL = {
    "name": "calculate_area",
    "description": "Calculate the area of a given shape",
    "parameters": {
        "type": "object",
        "properties": {"shape": {"type": "string"}, "dimensions": {"type": "array", "items": {"type": "number"}}},
        "required": ["shape", "dimensions"],
    },
}
CALL = {"name": "calculate_area", "arguments": {"shape": "square", "dimensions": [7]}}


def plain_chat(question: str, answer: str) -> dict:
    return {"conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}], "tools": "[]"}


def glaive_records() -> list[dict]:
    """Like glaive_toolcall_en_demo.json: plain chats with tools "[]", and tool-calling ones."""
    tool_chat = {
        "conversations": [
            {"from": "human", "value": "And a square with side length 7 units?"},
            {"from": "function_call", "value": json.dumps(CALL)},
            {"from": "observation", "value": '{"area": 49}'},
            {"from": "gpt", "value": "The area of the square is 49 square units."},
        ],
        "tools": json.dumps([AREA_TOOL]),
    }
    return [plain_chat("Define photoshop.", "An image editor."), plain_chat("Hi", "Hello!"), tool_chat, tool_chat]


@pytest.fixture
def glaive_file(tmp_path):
    path = tmp_path / "glaive_toolcall_en_demo.json"
    path.write_text(json.dumps(glaive_records(), indent=2), encoding="utf-8")
    return path


def v1_record(question: str, answer: str, user_weight=0.0, assistant_weight=1.0) -> dict:
    return {
        "messages": [
            {"role": "user", "content": [{"type": "text", "value": question}], "loss_weight": user_weight},
            {"role": "assistant", "content": [{"type": "text", "value": answer}], "loss_weight": assistant_weight},
        ]
    }


@pytest.fixture
def tool_tokenizer(tiny_model_dir):
    tokenizer = load_tokenizer(ModelSource(str(tiny_model_dir)))
    tokenizer.chat_template = TOOL_TEMPLATE
    return tokenizer


def decoded_runs(tokenizer, example) -> list[str]:
    return [tokenizer.decode(run) for run in trained_runs(example)]


def problems_of(path) -> list[str]:
    with pytest.raises(UserInputError) as caught:
        load_dataset(path)
    return caught.value.problems


# ------------------------------------------------------------------------------------- reading
def test_alpaca_demo_shape_loads(tmp_path):
    path = tmp_path / "alpaca_en_demo.json"
    records = [
        {"instruction": "Describe a process of making crepes.", "input": "", "output": "Mix, pour, flip."},
        {"instruction": "Transform using a synonym:", "input": "The car sped quickly.", "output": "It raced."},
    ]
    path.write_text(json.dumps(records), encoding="utf-8")
    dataset = load_dataset(path)
    assert dataset.format == "alpaca"
    assert dataset.conversations[1] == [
        {"role": "user", "content": "Transform using a synonym:\n\nThe car sped quickly."},
        {"role": "assistant", "content": "It raced."},
    ]


def test_v1_parts_form_reads_text_and_loss_weight(tmp_path):
    """v1_sft_demo.jsonl used to be refused with "'content' is missing or empty"."""
    path = write_jsonl(
        tmp_path / "v1_sft_demo.jsonl",
        [
            v1_record("hi", "Hello! I am {{name}}."),
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "text", "value": "Who "}, {"type": "text", "value": "are you?"}],
                    },
                    {"role": "assistant", "content": [{"type": "text", "value": "A bot."}], "loss_weight": 0.0},
                    {"role": "user", "content": [{"type": "text", "text": "Really?"}]},  # OpenAI's part form
                    {"role": "assistant", "content": [{"type": "text", "text": "Yes."}], "loss_weight": 1},
                ]
            },
        ],
    )
    dataset = load_dataset(path)
    assert dataset.format == "openai"
    assert dataset.conversations[0] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello! I am {{name}}."},
    ]
    assert dataset.conversations[1] == [
        {"role": "user", "content": "Who are you?"},
        {"role": "assistant", "content": "A bot.", "loss_weight": 0},
        {"role": "user", "content": "Really?"},
        {"role": "assistant", "content": "Yes."},
    ]


def test_non_text_parts_and_other_loss_weights_are_refused_by_record(tmp_path):
    image = {"type": "image_url", "image_url": {"url": "cat.png"}}
    path = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            v1_record("ok", "fine"),
            {
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]},
                    {"role": "assistant", "content": "A cat."},
                ]
            },
            v1_record("half", "weighted", assistant_weight=0.5),
            v1_record("prompt", "trained", user_weight=1.0),
            {"messages": [{"role": "user", "content": ["bare string"]}, {"role": "assistant", "content": "x"}]},
        ],
    )
    assert problems_of(path) == [
        "line 2, messages[1]: content[2] is a 'image_url' part: only text can be trained here (LoRA Tailor "
        "tunes text chat models); remove the non-text parts",
        "line 3, messages[2]: loss_weight must be 0 (not trained) or 1 (trained), got 0.5: LoRA Tailor "
        "trains a message or not, it does not weight it",
        "line 4, messages[1]: loss_weight 1 on a user message: only assistant messages are trained here "
        "(train_on_prompt: true trains every token)",
        'line 5, messages[1]: content[1] must be a part like {"type": "text", "text": "..."}',
    ]


def test_sharegpt_tool_calls_become_assistant_calls_and_tool_results(glaive_file):
    dataset = load_dataset(glaive_file)
    assert dataset.format == "sharegpt"
    assert conversation_tools(dataset.conversations[0]) == []  # tools "[]": a plain chat
    tool_chat = dataset.conversations[2]
    assert conversation_tools(tool_chat) == [{"type": "function", "function": AREA_TOOL}]
    assert [m["role"] for m in tool_chat] == ["user", "assistant", "tool", "assistant"]
    assert tool_chat[1] == {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": CALL}]}
    assert tool_chat[2] == {"role": "tool", "content": '{"area": 49}'}


def test_openai_tool_calls_with_json_arguments(tmp_path):
    record = {
        "messages": [
            {"role": "user", "content": "Area of a 7 square?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "calculate_area", "arguments": json.dumps(CALL["arguments"])},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"area": 49}'},
            {"role": "assistant", "content": "49."},
        ],
        "tools": [{"type": "function", "function": AREA_TOOL}],
    }
    (conversation,) = load_dataset(write_jsonl(tmp_path / "tools.jsonl", [record])).conversations
    assert conversation[1]["tool_calls"] == [{"type": "function", "function": CALL, "id": "call_1"}]
    assert conversation[2] == {"role": "tool", "content": '{"area": 49}', "tool_call_id": "call_1"}
    assert conversation_tools(conversation) == record["tools"]


def test_bad_tool_conversations_are_named(tmp_path):
    def chat(*turns, tools="[]"):
        return {"conversations": [{"from": f, "value": v} for f, v in turns], "tools": tools}

    path = tmp_path / "bad_tools.json"
    records = [
        chat(("human", "q"), ("function_call", "{not json"), ("observation", "r"), ("gpt", "a")),
        chat(("human", "q"), ("gpt", "a"), ("observation", "r"), ("gpt", "b")),  # a result nobody asked for
        chat(("human", "q"), ("function_call", json.dumps(CALL)), ("human", "again"), ("gpt", "b")),
        chat(("human", "q"), ("function_call", '{"arguments": {}}'), ("observation", "r"), ("gpt", "a")),
        chat(("human", "q"), ("gpt", "a"), tools='{"oops": 1}'),
    ]
    path.write_text(json.dumps(records), encoding="utf-8")
    tools_hint = "(system first, then user and assistant alternating; tool results follow an assistant's tool calls)"
    assert problems_of(path) == [
        "record 1, conversations[2]: the tool call is not valid JSON (Expecting property name enclosed in "
        "double quotes at column 2)",
        "record 1, conversations[2]: empty assistant reply",
        f"record 2: roles out of order: turn 3 is 'tool', expected 'user' {tools_hint}",
        f"record 3: roles out of order: turn 3 is 'user', expected 'tool' {tools_hint}",
        'record 4, conversations[2]: a tool call must be an object with a "name" and "arguments", '
        "got {'arguments': {}}",
        "record 4, conversations[2]: empty assistant reply",
        'record 5: tools[1] must be a function definition with a "name"',
    ]


# ------------------------------------------------------------------------------------ training
def test_loss_weight_zero_leaves_that_reply_untrained(tmp_path, tiny_tokenizer):
    path = write_jsonl(
        tmp_path / "v1.jsonl",
        [
            {
                "messages": [
                    {"role": "user", "content": [{"type": "text", "value": "Hello!"}]},
                    {"role": "assistant", "content": [{"type": "text", "value": "Hi there."}], "loss_weight": 0},
                    {"role": "user", "content": [{"type": "text", "value": "What is the return policy?"}]},
                    {"role": "assistant", "content": [{"type": "text", "value": "Within 30 days."}]},
                ]
            }
        ],
    )
    (conversation,) = load_dataset(path).conversations
    (example,) = ChatEncoder(tiny_tokenizer).encode([conversation])
    assert decoded_runs(tiny_tokenizer, example) == ["Within 30 days." + END]
    labels = example.labels()
    trained_ids = tiny_tokenizer("Within 30 days." + END, add_special_tokens=False)["input_ids"]
    assert labels[labels != IGNORE_INDEX].tolist() == trained_ids  # exactly the trained reply's tokens

    # train_on_prompt trains every token but the reply marked loss_weight 0 (and its end-of-turn).
    (everything,) = ChatEncoder(tiny_tokenizer, train_on_prompt=True).encode([conversation])
    assert np.array_equal(everything.input_ids, example.input_ids)
    runs = decoded_runs(tiny_tokenizer, everything)
    assert len(runs) == 2 and runs[0].endswith("<|im_start|>assistant\n") and "Hi there." not in "".join(runs)
    assert runs[1].startswith("\n<|im_start|>user") and runs[1].endswith("Within 30 days." + END + "\n")


def test_tool_calls_are_trained_and_results_masked(glaive_file, tool_tokenizer):
    conversations = load_dataset(glaive_file).conversations
    encoder = ChatEncoder(tool_tokenizer)
    plain, _, tool_chat, _ = encoder.encode(conversations)
    assert decoded_runs(tool_tokenizer, plain) == ["An image editor." + END]
    text = tool_tokenizer.decode(tool_chat.input_ids)
    assert '"name": "calculate_area"' in text.split("<|im_start|>user")[0]  # the definitions, in the system turn
    call = '<tool_call>{"name": "calculate_area", "arguments": {"shape": "square", "dimensions": [7]}}</tool_call>'
    assert decoded_runs(tool_tokenizer, tool_chat) == [call + END, "The area of the square is 49 square units." + END]
    assert '{"area": 49}' in text  # the tool result is there as context, and untrained (not in the runs above)


def test_a_template_without_tool_support_is_refused_naming_the_examples(glaive_file, tiny_tokenizer):
    conversations = load_dataset(glaive_file).conversations
    assert ChatEncoder(tiny_tokenizer).tool_support == (False, False)
    with pytest.raises(UserInputError) as caught:
        ChatEncoder(tiny_tokenizer).encode(conversations)
    assert str(caught.value).startswith(
        "2 example(s) (3, 4, counted from 1 in dataset order) define or call tools, but "
    )
    assert "chat template has no tool-calling support: it leaves the tool definitions and calls out" in str(
        caught.value
    )
    ChatEncoder(tiny_tokenizer).encode(conversations[:2])  # the plain chats alone are fine


def test_lengths_cli_on_a_toolcall_file(glaive_file, tiny_model_dir, tool_tokenizer, tmp_path, capsys):
    """One clear message with a template lacking tools (not hundreds of role problems); numbers with one."""
    assert main([str(glaive_file), "--model", str(tiny_model_dir)]) == 2
    error = capsys.readouterr().err.strip()
    assert "no tool-calling support" in error and "problem(s)" not in error and len(error.splitlines()) == 1

    tool_model = tmp_path / "tool-model"
    shutil.copytree(tiny_model_dir, tool_model)
    tool_tokenizer.save_pretrained(tool_model)
    report = analyze_file(glaive_file, model=str(tool_model), cutoff_len=256)
    encoded = ChatEncoder(tool_tokenizer).encode(load_dataset(glaive_file).conversations)
    assert report.examples == 4
    assert report.summary["supervised"]["max"] == max(int(e.trained.sum()) for e in encoded)
    assert report.summary["total"]["max"] == max(len(e.input_ids) for e in encoded)


def test_the_data_tab_preview_shows_tools_calls_and_untrained_replies(glaive_file):
    from webui.tabs.data import preview_messages

    tool_chat = load_dataset(glaive_file).conversations[2]
    tool_chat[-1]["loss_weight"] = 0
    assert preview_messages(tool_chat) == [
        {"role": "user", "content": "🔧 tools: calculate_area\n\nAnd a square with side length 7 units?"},
        {"role": "assistant", "content": '🔧 calculate_area({"shape": "square", "dimensions": [7]})'},
        {"role": "user", "content": '🔧 → {"area": 49}'},
        {
            "role": "assistant",
            "content": "The area of the square is 49 square units.\n\n*(loss_weight 0: not trained)*",
        },
    ]


def test_the_trainer_encodes_tool_calls_through_the_same_path(glaive_file, tool_tokenizer, tiny_tokenizer):
    from core.config import TrainConfig
    from core.engine import encode_dataset

    config = TrainConfig(dataset=str(glaive_file), cutoff_len=2048)
    examples, stats = encode_dataset(config, tool_tokenizer)
    expected = ChatEncoder(tool_tokenizer).encode(load_dataset(glaive_file).conversations)
    assert stats["examples"] == 4 and stats["dropped"] == stats["truncated"] == 0
    assert [e.labels().tolist() for e in examples] == [e.labels().tolist() for e in expected]
    with pytest.raises(UserInputError, match="no tool-calling support"):
        encode_dataset(config, tiny_tokenizer)
