"""Render conversations with the tokenizer's own chat template and mark the tokens to train.

This is the one code path from a conversation to (input_ids, trained mask): the trainer, the
length analyzer and the tests all call `ChatEncoder.encode`, so what the analyzer counts is what
the trainer sees.

How the mask is found, template-agnostically: for assistant turn i, the template rendered up to
turn i-1 plus the generation prompt ("<|im_start|>assistant\\n") ends exactly where the reply starts,
and the template rendered through turn i ends after the reply and its end-of-turn marker
("...<|im_end|>\\n"). The characters in between, minus trailing whitespace, are trained: the reply
AND the end-of-turn token, so the bot learns to stop. Tokens are mapped to characters with the fast
tokenizer's offsets.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.data import Conversation
from core.errors import UserInputError

IGNORE_INDEX = -100  # label value the loss skips (transformers / torch convention)


@dataclass
class Encoded:
    """One tokenized conversation. Both arrays have the rendered length."""

    input_ids: np.ndarray  # int64 [length]
    trained: np.ndarray  # bool [length]: True where the loss is computed

    def labels(self) -> np.ndarray:
        return np.where(self.trained, self.input_ids, IGNORE_INDEX)


def with_system_prompt(conversation: Conversation, system_prompt: str) -> Conversation:
    """Put `system_prompt` in front of a conversation that has no system turn (training and chat)."""
    if system_prompt.strip() and (not conversation or conversation[0]["role"] != "system"):
        return [{"role": "system", "content": system_prompt}, *conversation]
    return conversation


class ChatEncoder:
    """Renders and tokenizes conversations for one tokenizer and one set of options."""

    def __init__(self, tokenizer, system_prompt: str = "", train_on_prompt: bool = False):
        if not getattr(tokenizer, "is_fast", False):
            raise UserInputError("A fast (Rust) tokenizer is needed to map tokens to characters; "
                                 f"{type(tokenizer).__name__} is not one.")
        from transformers.utils.chat_template_utils import _compile_jinja_template

        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.train_on_prompt = train_on_prompt
        # Compiled once: rendering through the compiled template directly (with the same variables
        # apply_chat_template passes) avoids its per-call overhead, which dominates on 100k examples.
        self._template = _compile_jinja_template(tokenizer.chat_template)
        self._variables = dict(tokenizer.special_tokens_map)

    def render(self, messages: Conversation, add_generation_prompt: bool = False) -> str:
        return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                     tools=None, documents=None, **self._variables)

    def prompt_for_reply(self, conversation: Conversation) -> str:
        """The text the model continues to answer the last user turn (the chat tab uses this)."""
        return self.render(with_system_prompt(conversation, self.system_prompt), add_generation_prompt=True)

    def _text_and_spans(self, conversation: Conversation) -> tuple[str, list[tuple[int, int]]]:
        messages = with_system_prompt(conversation, self.system_prompt)
        text = self.render(messages)
        if self.train_on_prompt:
            return text, [(0, len(text))]
        spans = []
        for index, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            prompt = self.render(messages[:index], add_generation_prompt=True)
            through = self.render(messages[: index + 1])
            if not (text.startswith(through) and through.startswith(prompt)):
                raise UserInputError("This chat template renders a conversation differently from its "
                                     "prefixes, so the assistant turns cannot be located.")
            spans.append((len(prompt), len(through.rstrip())))
        return text, spans

    def encode(self, conversations: list[Conversation]) -> list[Encoded]:
        """Tokenize many conversations in one batch call (the Rust tokenizer runs them in parallel)."""
        rendered = [self._text_and_spans(c) for c in conversations]
        batch = self.tokenizer([text for text, _ in rendered], add_special_tokens=False,
                               return_offsets_mapping=True, return_attention_mask=False)
        out = []
        for (_, spans), ids, offsets in zip(rendered, batch["input_ids"], batch["offset_mapping"]):
            offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)  # [length, (start, end)]
            trained = np.zeros(len(ids), dtype=bool)
            for start, end in spans:
                # A token is trained when it lies inside the span; a token straddling the span's
                # start (e.g. a merged newline) belongs to the prompt.
                trained |= (offsets[:, 0] >= start) & (offsets[:, 1] <= end) & (offsets[:, 1] > offsets[:, 0])
            out.append(Encoded(np.asarray(ids, dtype=np.int64), trained))
        return out


def truncate(example: Encoded, cutoff_len: int) -> Encoded:
    """Keep the first `cutoff_len` tokens (the conversation's beginning gives the later turns context)."""
    return Encoded(example.input_ids[:cutoff_len], example.trained[:cutoff_len])
