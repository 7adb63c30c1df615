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

Rendering every prefix of every conversation through jinja costs 1 + 2 x (assistant turns) renders
per conversation and dominated the time on large datasets. Most chat templates only ever copy a
message's content verbatim into the output, so the prefix renders differ from conversation to
conversation only by the contents: `_Skeleton` renders each role sequence once with placeholder
contents, and a conversation of that shape then needs one real render, which is checked against
the skeleton with the real contents filled in. Templates that inspect or transform the content
(`|trim`, `'<think>' in content`, ...) and conversations whose render does not match the skeleton
take the prefix-rendering path; both paths give the same spans.

A message with loss_weight 0 (core.data) is rendered as context: its span is left out of the
trained ones (and, with train_on_prompt, cut out of the whole-text span). Tool-calling
conversations go through the template's own tool support: the tool definitions as its `tools`
variable, the calls as the assistant messages' `tool_calls`, so a call is trained like any reply
and a tool result, not being an assistant turn, is not. A template that would silently drop them
is refused for those conversations (`tool_support`).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from core.data import TOOLS, Conversation, conversation_tools, uses_tools
from core.errors import UserInputError

IGNORE_INDEX = -100  # label value the loss skips (transformers / torch convention)
ENCODE_CHUNK = 2048  # conversations per tokenizer call: batched, with bounded Python-list memory

# Placeholder contents for skeleton renders: private-use characters no chat template writes itself.
_PLACEHOLDER = "\ue000{}\ue001"
_PLACEHOLDER_RE = re.compile("\ue000(\\d+)\ue001")
# A made-up tool and call: a template with tool support prints their names, one without drops them.
_PROBE_TOOL, _PROBE_CALL = "lt_probe_tool_definition", "lt_probe_tool_call"
_NOT_FOR_TEMPLATE = (TOOLS, "loss_weight")  # message keys core.data adds that are no chat-template input
SHOWN_EXAMPLES = 10  # example numbers named in a refusal, then "..."


@dataclass
class Encoded:
    """One tokenized conversation. Both arrays have the rendered length."""

    input_ids: np.ndarray  # int64 [length]
    trained: np.ndarray  # bool [length]: True where the loss is computed

    def labels(self) -> np.ndarray:
        return np.where(self.trained, self.input_ids, IGNORE_INDEX)


def _template_inputs(messages: Conversation) -> tuple[Conversation, list | None]:
    """(messages, tools) as the chat template takes them: the messages without the keys only this
    code reads, the tools they carry (None for none). One plain loop: this runs for every render."""
    for message in messages:
        if TOOLS in message or "loss_weight" in message:
            break
    else:
        return messages, None
    stripped = [{k: v for k, v in m.items() if k not in _NOT_FOR_TEMPLATE} for m in messages]
    return stripped, conversation_tools(messages) or None


def _numbers(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:SHOWN_EXAMPLES]))
    return shown + (", ..." if len(numbers) > SHOWN_EXAMPLES else "")


def with_system_prompt(conversation: Conversation, system_prompt: str) -> Conversation:
    """Put `system_prompt` in front of a conversation that has no system turn (training and chat)."""
    if system_prompt.strip() and (not conversation or conversation[0]["role"] != "system"):
        return [{"role": "system", "content": system_prompt}, *conversation]
    return conversation


# Filters and tests that look at a message (or the message list) without reading its content.
_SAFE_FILTERS = {"length", "count", "first", "last", "list", "reverse", "selectattr", "rejectattr"}
_KEEPS_MESSAGES = {"first", "last", "list", "reverse", "selectattr", "rejectattr"}  # result is still messages
_SAFE_TESTS = {"defined", "undefined", "none", "string", "mapping", "sequence", "iterable"}


def _content_is_only_copied(template_ast) -> bool:
    """True when the template's output depends on message contents only by copying them verbatim.

    Checked on the jinja syntax tree: every `x['content']` / `x.content` sits directly in an output
    tag (alone or joined with + or ~) or is only tested for truth (`{% if message.content %}`; the
    fast path runs only on non-empty contents, so the test comes out as for the placeholder); the
    name 'content' appears nowhere else (`.get('content')`, `map(attribute='content')`); no block
    captures or filters output; and a message is only ever iterated, indexed, assigned, counted or
    has a field read (never printed, serialised, compared or passed to a call). Then the contents
    never steer the control flow, and the render of any prefix equals the placeholder render with
    the contents filled in.
    """
    from jinja2 import nodes

    # Names that may hold a message or the message list: `messages`, loop variables over them and
    # variables set from them (a superset is fine: it can only turn the fast path off).
    message_names, known = {"messages"}, set()
    while known != message_names:
        known = set(message_names)
        for node in template_ast.find_all((nodes.For, nodes.Assign)):
            source = node.iter if isinstance(node, nodes.For) else node.node
            if any(
                n.name in message_names for n in [source, *source.find_all(nodes.Name)] if isinstance(n, nodes.Name)
            ):
                message_names |= {
                    n.name for n in [node.target, *node.target.find_all(nodes.Name)] if isinstance(n, nodes.Name)
                }

    def is_message(expr) -> bool:
        """Might `expr` evaluate to a message or a list of them (not to one of their fields)?"""
        if isinstance(expr, nodes.Name):
            return expr.ctx == "load" and expr.name in message_names
        if isinstance(expr, nodes.Getitem):
            field = isinstance(expr.arg, nodes.Const) and isinstance(expr.arg.value, str)
            return not field and is_message(expr.node)  # messages[0], messages[1:]; not message['role']
        if isinstance(expr, nodes.Getattr):
            return expr.attr in ("previtem", "nextitem") and isinstance(expr.node, nodes.Name)  # loop.nextitem
        return isinstance(expr, nodes.Filter) and expr.name in _KEEPS_MESSAGES and is_message(expr.node)

    def message_use_ok(node, parent) -> bool:
        if isinstance(parent, nodes.For):
            return node is parent.iter
        if isinstance(parent, nodes.Assign):  # to a plain variable (tracked above), not ns.attribute
            return node is parent.node and all(
                isinstance(t, nodes.Name) for t in [parent.target, *parent.target.find_all(nodes.Node)]
            )
        if isinstance(parent, (nodes.Getitem, nodes.Getattr)):
            return node is parent.node and not (isinstance(parent, nodes.Getattr) and hasattr(dict, parent.attr))
        if isinstance(parent, nodes.Filter):
            return node is parent.node and parent.name in _SAFE_FILTERS
        if isinstance(parent, nodes.Test):
            return node is parent.node and parent.name in _SAFE_TESTS
        return False  # {{ message }}, message|tojson, f(message), message == other, [message], ...

    def is_content(node) -> bool:
        if isinstance(node, nodes.Getattr):
            return node.attr == "content"
        return isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and node.arg.value == "content"

    def content_use_ok(node, parents: list) -> bool:
        child = node
        for depth in range(len(parents) - 1, -1, -1):
            parent, between = parents[depth], parents[depth + 1 :]
            if isinstance(parent, nodes.Output):
                return all(isinstance(p, (nodes.Add, nodes.Concat)) for p in between)
            if isinstance(parent, (nodes.If, nodes.CondExpr)):
                return parent.test is child and all(isinstance(p, (nodes.Not, nodes.And, nodes.Or)) for p in between)
            child = parent
        return False

    def ok(node, parents: list) -> bool:
        if isinstance(node, (nodes.AssignBlock, nodes.FilterBlock, nodes.Macro)):
            return False  # captured or filtered output, or content passed into a macro
        if isinstance(node, nodes.CallBlock) and not isinstance(node.call.node, nodes.ExtensionAttribute):
            return False  # a user macro could transform its caller's output ({% generation %} is fine)
        if isinstance(node, nodes.Const) and node.value == "content":
            return False  # .get('content'), map(attribute='content'); x['content'] is handled below
        if is_message(node) and not message_use_ok(node, parents[-1] if parents else None):
            return False
        if is_content(node):
            return content_use_ok(node, parents) and ok(node.node, parents + [node])
        return all(ok(child, parents + [node]) for child in node.iter_child_nodes())

    return ok(template_ast, [])


@dataclass
class _Skeleton:
    """One role sequence rendered with placeholder contents.

    The full render is pieces[0] + content[slots[0]] + pieces[1] + ... + pieces[-1]; each trained
    span is given by where its prompt and its `through` render end: (pieces before, chars into the
    next piece).
    """

    pieces: list[str]
    slots: list[int]  # message index whose content fills the gap after pieces[k]
    bounds: list[tuple[tuple[int, int], tuple[int, int]]]  # per assistant turn: (prompt end, through end)


class ChatEncoder:
    """Renders and tokenizes conversations for one tokenizer and one set of options."""

    def __init__(self, tokenizer, system_prompt: str = "", train_on_prompt: bool = False):
        if not getattr(tokenizer, "is_fast", False):
            raise UserInputError(
                f"A fast (Rust) tokenizer is needed to map tokens to characters; {type(tokenizer).__name__} is not one."
            )
        from transformers.utils.chat_template_utils import _compile_jinja_template

        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.train_on_prompt = train_on_prompt
        # Compiled once: rendering through the compiled template directly (with the same variables
        # apply_chat_template passes) avoids its per-call overhead, which dominates on 100k examples.
        self._template = _compile_jinja_template(tokenizer.chat_template)
        self._variables = dict(tokenizer.special_tokens_map)
        template_ast = self._template.environment.parse(tokenizer.chat_template)
        self._skeletons_allowed = _content_is_only_copied(template_ast)
        self._skeletons: dict[tuple[str, ...], _Skeleton | None] = {}

    def render(self, messages: Conversation, add_generation_prompt: bool = False) -> str:
        messages, tools = _template_inputs(messages)
        return self._template.render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            tools=tools,
            documents=None,
            **self._variables,
        )

    @cached_property
    def tool_support(self) -> tuple[bool, bool]:
        """(renders tool definitions, renders tool calls), found by rendering a made-up tool and a
        call to it: a template without tool support leaves them out (or fails on them)."""
        call = {"type": "function", "function": {"name": _PROBE_CALL, "arguments": {"x": 1}}}
        # A full JSON-schema definition: some templates read parameters.properties / required.
        parameters = {"type": "object", "properties": {"x": {"type": "integer", "description": "x"}}, "required": ["x"]}
        tool = {"type": "function", "function": {"name": _PROBE_TOOL, "description": "d", "parameters": parameters}}
        probe = [
            {"role": "user", "content": "q", TOOLS: [tool]},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "content": "r"},
            {"role": "assistant", "content": "a"},
        ]
        try:
            text = self.render(probe)
        except Exception:  # noqa: BLE001 - a template that raises on tools has no support for them
            return False, False
        return _PROBE_TOOL in text, _PROBE_CALL in text

    def check_tool_support(self, conversations: list[Conversation]) -> None:
        """Refuse conversations that define or call tools when the template would drop them: they
        would train on text that does not hold the tools. Examples are numbered from 1 in the order given."""
        using = [number for number, c in enumerate(conversations, start=1) if uses_tools(c)]
        if not using:
            return
        defines, calls = self.tool_support
        lacking = [
            number
            for number in using
            if (conversation_tools(conversations[number - 1]) and not defines)
            or (any(m.get("tool_calls") for m in conversations[number - 1]) and not calls)
        ]
        if lacking:
            name = getattr(self.tokenizer, "name_or_path", "") or type(self.tokenizer).__name__
            drops = "definitions and calls" if not (defines or calls) else ("calls" if defines else "definitions")
            raise UserInputError(
                f"{len(lacking)} example(s) ({_numbers(lacking)}, counted from 1 in dataset order) define or call "
                f"tools, but {name}'s chat template has no tool-calling support: it leaves the tool {drops} "
                f"out. Choose a model whose chat template renders tools (e.g. Qwen2.5-Instruct), or remove "
                f"those examples."
            )

    def prompt_for_reply(self, conversation: Conversation) -> str:
        """The text the model continues to answer the last user turn (the chat tab uses this)."""
        return self.render(with_system_prompt(conversation, self.system_prompt), add_generation_prompt=True)

    # ---------------------------------------------------------------------------- trained spans
    def _spans_by_prefix_renders(self, messages: Conversation, text: str) -> list[tuple[int, int]]:
        """The definition: render each assistant turn's prompt and `through` prefix."""
        spans = []
        for index, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            prompt = self.render(messages[:index], add_generation_prompt=True)
            through = self.render(messages[: index + 1])
            if not (text.startswith(through) and through.startswith(prompt)):
                raise UserInputError(
                    "This chat template renders a conversation differently from its "
                    "prefixes, so the assistant turns cannot be located."
                )
            spans.append((len(prompt), len(through.rstrip())))
        return spans

    def _skeleton(self, roles: tuple[str, ...]) -> _Skeleton | None:
        """The placeholder render of one role sequence, or None where it is not prefix-stable."""
        if roles in self._skeletons:
            return self._skeletons[roles]
        skeleton = None
        messages = [{"role": role, "content": _PLACEHOLDER.format(i)} for i, role in enumerate(roles)]
        try:
            full = self.render(messages)
            split = _PLACEHOLDER_RE.split(full)  # [piece, slot, piece, slot, ..., piece]
            pieces, slots = split[0::2], [int(s) for s in split[1::2]]

            def locate(prefix: str) -> tuple[int, int] | None:
                if not full.startswith(prefix):
                    return None
                parts = _PLACEHOLDER_RE.split(prefix)
                if "\ue000" in parts[-1]:
                    return None  # ends inside a placeholder
                return len(parts) // 2, len(parts[-1])

            bounds = []
            for index, role in enumerate(roles):
                if role == "assistant":
                    prompt = locate(self.render(messages[:index], add_generation_prompt=True))
                    through = locate(self.render(messages[: index + 1]))
                    if prompt is None or through is None or prompt > through:
                        raise ValueError("not prefix-stable")
                    bounds.append((prompt, through))
            skeleton = _Skeleton(pieces, slots, bounds)
        except Exception:  # noqa: BLE001 - any failure: this shape takes the prefix-render path
            skeleton = None
        self._skeletons[roles] = skeleton
        return skeleton

    def _assistant_spans(self, messages: Conversation, text: str) -> list[tuple[int, int]]:
        """(start, end) characters of every assistant turn in `text`, by the skeleton when it applies."""
        skeleton = None
        # Only plain {role, content} messages: tools, tool calls and loss weights take the prefix path.
        if self._skeletons_allowed and all(
            len(m) == 2 and isinstance(m.get("content"), str) and m["content"] for m in messages
        ):
            skeleton = self._skeleton(tuple(m["role"] for m in messages))
        if skeleton is None:
            return self._spans_by_prefix_renders(messages, text)
        contents = [messages[slot]["content"] for slot in skeleton.slots]
        parts = [None] * (2 * len(contents) + 1)
        parts[0::2], parts[1::2] = skeleton.pieces, contents
        if "".join(parts) != text:  # the template did not copy these contents verbatim
            return self._spans_by_prefix_renders(messages, text)
        piece_starts = [0, *itertools.accumulate(len(p) for p in parts)][0::2]
        spans = []
        for (prompt_piece, prompt_chars), (through_piece, through_chars) in skeleton.bounds:
            through_end = piece_starts[through_piece] + through_chars
            spans.append((piece_starts[prompt_piece] + prompt_chars, len(text[:through_end].rstrip())))
        return spans

    def _text_and_spans(self, conversation: Conversation) -> tuple[str, list[tuple[int, int]]]:
        messages = with_system_prompt(conversation, self.system_prompt)
        text = self.render(messages)
        trained = [m.get("loss_weight", 1) != 0 for m in messages if m["role"] == "assistant"]
        if self.train_on_prompt and all(trained):
            return text, [(0, len(text))]
        spans = self._assistant_spans(messages, text)
        if not self.train_on_prompt:
            return text, [span for span, train in zip(spans, trained) if train]
        # Every character but those of the replies marked loss_weight 0.
        cuts = [0, *itertools.chain.from_iterable(s for s, train in zip(spans, trained) if not train), len(text)]
        return text, [(start, end) for start, end in zip(cuts[0::2], cuts[1::2]) if end > start]

    def _rendered(self, number: int, conversation: Conversation) -> tuple[str, list[tuple[int, int]]]:
        """_text_and_spans, with a template's own refusal (`raise_exception`) named by example."""
        from jinja2 import TemplateError

        try:
            return self._text_and_spans(conversation)
        except TemplateError as err:
            raise UserInputError(
                f"Example {number} (counted from 1 in dataset order): the chat template refuses it: {err}"
            ) from None

    # ------------------------------------------------------------------------------- tokenizing
    def encode(self, conversations: list[Conversation]) -> list[Encoded]:
        """Tokenize many conversations: encode_chunks, one Encoded per conversation."""
        return [example for chunk in self.encode_chunks(conversations) for example in chunk.examples()]

    def encode_chunks(self, conversations: list[Conversation]) -> Iterator[EncodedChunk]:
        """Tokenize many conversations in batch calls (the Rust tokenizer runs them in parallel),
        yielding them in order, ENCODE_CHUNK at a time, as flat arrays.

        Pipelined by chunks: while a worker thread tokenizes one chunk (the Rust tokenizer releases
        the GIL), this thread assembles the previous one and renders the next.
        """
        self.check_tool_support(conversations)
        tokenize = _batch_tokenizer(self.tokenizer)
        with ThreadPoolExecutor(max_workers=1) as tokenizer_thread:
            pending = None
            for start in range(0, len(conversations), ENCODE_CHUNK):
                rendered = [
                    self._rendered(number, c)
                    for number, c in enumerate(conversations[start : start + ENCODE_CHUNK], start=start + 1)
                ]
                batch = tokenizer_thread.submit(tokenize, [text for text, _ in rendered])
                if pending is not None:
                    yield _assemble(*pending)
                pending = rendered, batch
            if pending is not None:
                yield _assemble(*pending)


@dataclass
class EncodedChunk:
    """Consecutive tokenized conversations as flat arrays, example after example."""

    lengths: np.ndarray  # int64 [examples]: tokens per example
    trained: np.ndarray  # bool [tokens]
    encodings: list = field(repr=False)  # the tokenizer's Encodings, one per example

    @cached_property
    def input_ids(self) -> np.ndarray:
        """int64 [tokens], read from the Encodings when first asked (the length analysis never asks)."""
        ids = itertools.chain.from_iterable(e.ids for e in self.encodings)
        return np.fromiter(ids, np.int64, int(self.lengths.sum()))

    def examples(self) -> list[Encoded]:
        """One Encoded per example (views into the flat arrays)."""
        ends = np.cumsum(self.lengths).tolist()
        ids, trained = self.input_ids, self.trained
        return [Encoded(ids[start:end], trained[start:end]) for start, end in zip([0, *ends], ends)]


def _batch_tokenizer(tokenizer) -> Callable[[list[str]], list]:
    """texts -> the Rust Encodings of tokenizer(texts, add_special_tokens=False), without the
    Python lists of ids, offsets and type ids that call builds and this module would only flatten
    again. A tokenizer class that encodes its own way keeps its own call."""
    from transformers.tokenization_utils_tokenizers import TokenizersBackend

    if any(getattr(type(tokenizer), f) is not getattr(TokenizersBackend, f) for f in ("__call__", "_encode_plus")):
        return lambda texts: tokenizer(texts, add_special_tokens=False, return_attention_mask=False).encodings
    backend = tokenizer.backend_tokenizer

    def tokenize(texts: list[str]) -> list:
        # The backend set up as that call sets it, before every batch as it does: another call on
        # the same tokenizer (padding=True, truncation=True) leaves its settings on the backend.
        if backend.truncation is not None:
            backend.no_truncation()
        if backend.padding is not None:
            backend.no_padding()
        backend.encode_special_tokens = tokenizer.split_special_tokens
        return backend.encode_batch(texts, add_special_tokens=False)

    return tokenize


def _assemble(rendered: list[tuple[str, list[tuple[int, int]]]], batch: Future) -> EncodedChunk:
    """One chunk's examples from its (text, spans) and its Encodings."""
    encodings = batch.result()
    # The whole chunk's [tokens, 2] character offsets as one array.
    lengths = np.fromiter(map(len, encodings), np.int64, len(rendered))
    n_tokens = int(lengths.sum())
    offsets = np.fromiter(
        itertools.chain.from_iterable(itertools.chain.from_iterable(e.offsets for e in encodings)),
        np.int64,
        2 * n_tokens,
    ).reshape(-1, 2)
    trained = _trained_mask([spans for _, spans in rendered], [len(text) for text, _ in rendered], lengths, offsets)
    return EncodedChunk(lengths, trained, encodings)


def _trained_mask(
    spans: list[list[tuple[int, int]]], text_lengths: list[int], token_counts: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    """[tokens] bool for a chunk: is each token (character offsets [tokens, 2]) inside a trained span?

    A token is trained when it overlaps a span. A token straddling a span's edge carries reply
    characters (e.g. ' the' when the generation prompt ends in a space and the byte-level tokenizer
    merges it into the reply's first word): leaving it out would never train that word.
    """
    nonempty = offsets[:, 1] > offsets[:, 0]
    # Put every example's characters on one axis (example e starts at text_base[e]).
    text_base = np.zeros(len(text_lengths), np.int64)
    np.cumsum(text_lengths[:-1], out=text_base[1:])
    token_base = np.repeat(text_base, token_counts)
    starts, ends = offsets[:, 0] + token_base, offsets[:, 1] + token_base
    flat = np.array(
        [
            (example, start + base, end + base)
            for example, (example_spans, base) in enumerate(zip(spans, text_base.tolist()))
            for start, end in example_spans
        ],
        dtype=np.int64,
    ).reshape(-1, 3)
    if not len(flat):
        return np.zeros(len(offsets), dtype=bool)
    span_starts, span_ends = flat[:, 1], flat[:, 2]
    if np.all(span_starts[1:] >= np.maximum(span_starts[:-1], span_ends[:-1])):
        # Ordered, disjoint spans (each turn's prompt extends the previous turn's reply): a token
        # overlaps a span iff it overlaps the last span starting at or before its last character.
        span = np.searchsorted(span_starts, ends - 1, side="right") - 1
        return (span >= 0) & (starts < span_ends[np.maximum(span, 0)]) & nonempty
    trained = np.zeros(len(offsets), dtype=bool)
    token_start = np.concatenate([[0], np.cumsum(token_counts)])
    for example, start, end in flat.tolist():  # any other template: the union of the spans
        part = slice(token_start[example], token_start[example + 1])
        trained[part] |= (ends[part] > start) & (starts[part] < end) & nonempty[part]
    return trained


def truncate(example: Encoded, cutoff_len: int) -> Encoded:
    """Keep the first `cutoff_len` tokens (the conversation's beginning gives the later turns context)."""
    return Encoded(example.input_ids[:cutoff_len], example.trained[:cutoff_len])
