"""An Ollama `Modelfile` for an exported GGUF: FROM, TEMPLATE, SYSTEM and stop parameters.

Ollama renders prompts with a Go template, not the model's Jinja chat template. The one Go
template written here is ChatML (`<|im_start|>role\\n...<|im_end|>\\n`, as SmolLM2 and Qwen2 use).
Whether the model's template *is* ChatML is checked by rendering, not by reading its source:
`chatml_system_prompt` renders a few plain system/user/assistant chats with the Jinja template and
with `render_chatml` (what the Go template produces) and accepts only when every render agrees.

The system prompt a template adds to a chat without one (the run's `system_prompt` is baked into
the saved template, core.engine.save_tokenizer_with_system_prompt) becomes SYSTEM: Ollama prepends
SYSTEM as a system message to a chat that has none, which is what the Jinja template does.

A template that is not ChatML gets no TEMPLATE line, and the Modelfile says so: Ollama then uses
the template it recognises from the GGUF's `tokenizer.chat_template`, or none (`ollama show
--modelfile` shows which), and the answers may not match what the run was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import UserInputError
from core.template import ChatEncoder

IM_START, IM_END = "<|im_start|>", "<|im_end|>"

# Ollama's `.Messages` include the SYSTEM message when the chat has none; the assistant header at
# the end is the generation prompt (Ollama's last message is the user's).
CHATML_GO_TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
)

# Chats the Jinja and ChatML renders must agree on: a chat without a system turn (the template's
# own system prompt, if any, goes first), one with its own system turn, and several turns.
_MARK = "\u2063"  # invisible separator: no template produces it, so it cannot be confused with markup
_PROBE_CHATS = [
    [{"role": "user", "content": f"Hello{_MARK}"}],
    [
        {"role": "system", "content": f"Be brief{_MARK}"},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"},
    ],
    [
        {"role": "user", "content": "What time is it?"},
        {"role": "assistant", "content": "Nine."},
        {"role": "user", "content": "Thanks"},
    ],
]


def render_chatml(messages: list[dict[str, str]]) -> str:
    """What CHATML_GO_TEMPLATE renders for `messages` (Ollama's view of the chat)."""
    turns = "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in messages)
    return turns + f"{IM_START}assistant\n"


def chatml_system_prompt(encoder: ChatEncoder) -> str | None:
    """The system prompt the template gives a chat without one ("" if none), or None when the
    template does not render these chats as ChatML."""
    first = encoder.render(_PROBE_CHATS[0], add_generation_prompt=True)
    header = f"{IM_START}system\n"
    system = ""
    if first.startswith(header) and IM_END in first:
        system = first[len(header) : first.index(IM_END)]
    for chat in _PROBE_CHATS:
        needs_system = system and chat[0]["role"] != "system"
        expected = render_chatml(([{"role": "system", "content": system}] if needs_system else []) + chat)
        if encoder.render(chat, add_generation_prompt=True) != expected:
            return None
    return system


@dataclass(frozen=True)
class Modelfile:
    text: str
    template_translated: bool  # False: no TEMPLATE line (not a ChatML chat template)


def _quoted(value: str, what: str) -> str:
    if '"""' in value:
        raise UserInputError(f'The {what} contains """, which an Ollama Modelfile cannot quote: remove it.')
    return f'"""{value}"""'


def build_modelfile(gguf_name: str, tokenizer, system_prompt: str) -> Modelfile:
    """The Modelfile beside `gguf_name`; `system_prompt` is the run's, used when the template is
    not ChatML (a ChatML template's own system prompt is read from the template)."""
    encoder = ChatEncoder(tokenizer)
    system = chatml_system_prompt(encoder)
    translated = system is not None
    lines = [f"FROM ./{gguf_name}", ""]
    stops = [IM_END, IM_START] if translated else []
    if translated:
        lines.append(f"TEMPLATE {_quoted(CHATML_GO_TEMPLATE, 'template')}")
    else:
        lines += [
            "# TEMPLATE not written: this model's chat template is not ChatML, the one template this",
            "# exporter translates to Ollama's Go syntax. Ollama uses the template it recognises from",
            "# the GGUF's tokenizer.chat_template, or none: check with `ollama show --modelfile`.",
        ]
        system = system_prompt
    if system:
        lines.append(f"SYSTEM {_quoted(system, 'system prompt')}")
    if tokenizer.eos_token and tokenizer.eos_token not in stops:
        stops.append(tokenizer.eos_token)
    lines += [f'PARAMETER stop "{stop}"' for stop in stops]
    return Modelfile("\n".join(lines) + "\n", template_translated=translated)
