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
contents, and a conversation of that shape is that render with its contents filled in: no jinja
call per conversation (the syntax-tree check below proves it, probe contents check it again; a
template whose output can change between renders, e.g. with the date, is still rendered and
compared). Templates that inspect or transform the content (`|trim`, `'<think>' in content`, ...)
take the prefix-rendering path; both paths give the same spans.

For a tokenizer that tokenizes the stretches between its added tokens independently (byte-level
BPE), the template's own text is tokenized once per skeleton too: per conversation only the
contents with the text around them up to the nearest special token (`assistant\n` + reply) go to
the tokenizer, and the trained tokens are found with a char_to_token per span boundary instead of
reading every token's offsets (_Segments). Everything else tokenizes the whole rendered text.

A message with loss_weight 0 (core.data) is rendered as context: its span is left out of the
trained ones (and, with train_on_prompt, cut out of the whole-text span). Tool-calling
conversations go through the template's own tool support: the tool definitions as its `tools`
variable, the calls as the assistant messages' `tool_calls`, so a call is trained like any reply
and a tool result, not being an assistant turn, is not. A template that would silently drop them
is refused for those conversations (`tool_support`).
"""

from __future__ import annotations

import collections
import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from core.data import TOOLS, Conversation, conversation_tools, uses_tools
from core.errors import UserInputError

IGNORE_INDEX = -100  # label value the loss skips (transformers / torch convention)
ENCODE_CHUNK = 2048  # conversations per tokenizer call: batched, with bounded Python-list memory
# Tokenizer calls at once: with one, the Rust pool idles while a batch's last texts finish, and the
# exact count took 1.15x the time of one call on all texts; with two, as long (bench/README.md).
BATCHES_IN_FLIGHT = 2

# Placeholder contents for skeleton renders: private-use characters no chat template writes itself.
_PLACEHOLDER = "\ue000{}\ue001"
_PLACEHOLDER_RE = re.compile("\ue000(\\d+)\ue001")
# Contents a template's parts must survive: edge whitespace, special-token text, multi-byte text.
_SEGMENT_PROBES = (
    " lead and trail ",
    "\n\nnew\nlines\n\n",
    "<|im_end|>",
    "x<|im_start|>user\n",
    "中文 🙂 é",
    "\t",
    "<|im_",
    "|>",
    "  ",
    "end<",
    "\ue000 0\ue001",
    "?",
)
# Template names whose output can differ between two renders of the same messages.
_VARYING_CALLS = {"strftime_now", "lipsum", "cycler", "joiner"}
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


def _varies_between_renders(template_ast) -> bool:
    """Might two renders of the same messages differ (the date, random choices)?"""
    from jinja2 import nodes

    if any(n.name in _VARYING_CALLS for n in template_ast.find_all(nodes.Name)):
        return True
    return any(f.name in ("random", "shuffle") for f in template_ast.find_all(nodes.Filter))


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
    segments: _Segments | None = None  # how to tokenize it by parts (None: tokenize the whole text)

    def fill(self, contents: list[str]) -> str:
        """The render with these contents (one per message)."""
        parts = [None] * (2 * len(self.slots) + 1)
        parts[0::2], parts[1::2] = self.pieces, [contents[slot] for slot in self.slots]
        return "".join(parts)

    def spans(self, contents: list[str], text: str) -> list[tuple[int, int]]:
        """(start, end) characters of every assistant turn in `text`, the fill of `contents`."""
        lengths = [len(contents[slot]) for slot in self.slots]
        piece_starts, start = [], 0
        for piece, length in zip(self.pieces, [*lengths, 0]):
            piece_starts.append(start)
            start += len(piece) + length
        spans = []
        for (prompt_piece, prompt_chars), (through_piece, through_chars) in self.bounds:
            through_end = piece_starts[through_piece] + through_chars
            spans.append((piece_starts[prompt_piece] + prompt_chars, len(text[:through_end].rstrip())))
        return spans


# A token boundary in a conversation tokenized by parts: (constant tokens before it, variable parts
# wholly before it, the variable part it falls in or -1, chars into that part before any content,
# the messages whose contents come first in that part).
_Locator = tuple[int, int, int, int, tuple[int, ...]]


@dataclass
class _Segments:
    """A skeleton cut at the tokenizer's added (special) tokens, to tokenize by parts.

    The Rust tokenizer splits a text at its added tokens first and tokenizes the stretches between
    them independently (see _splits_at_added_tokens for when that holds). So a conversation's
    tokens are the constant parts' tokens, tokenized once here, interleaved with those of the
    variable parts (a piece's tail + a content + the next piece's head), the only text tokenized
    per conversation. The trained spans' ends fall at fixed places of the skeleton: their token
    positions are the constant tokens before them plus, inside a variable part, a char_to_token.
    """

    layout: list[list[int] | None]  # the parts in order: a constant part's ids, None for a variable part
    recipes: list[tuple[str | int, ...]]  # per variable part: its literal texts and message indices (contents)
    constant_tokens: int  # tokens of all constant parts together
    spans: list[tuple[_Locator, _Locator]]  # per assistant turn: its first and past-its-last trained token

    def texts(self, contents: list[str]) -> list[str]:
        """The variable parts' texts for one conversation's contents (one per message)."""
        return ["".join([contents[x] if type(x) is int else x for x in recipe]) for recipe in self.recipes]

    def ids(self, encodings: list) -> list[list[int]]:
        """A conversation's token ids, part by part, from its variable parts' Encodings."""
        variable = iter(encodings)
        return [next(variable).ids if ids is None else ids for ids in self.layout]


def _tokens_before_char(encoding, char: int, starts: bool) -> int:
    """Within one variable part: with `starts`, the tokens that end at or before `char` (the first
    trained one is the next); otherwise the tokens that start before it (the trained ones end
    there). Tokens overlapping a span are trained, as in _trained_mask. Token offsets are ordered
    and never empty here (byte-level BPE; _segments_match checks it on probes)."""
    token = encoding.char_to_token(char)  # the first token holding that character
    if token is None:  # past the part's end, or a character no token holds: count on the offsets
        return sum(1 for start, end in encoding.offsets if (end <= char if starts else start < char))
    if not starts:
        while token < len(encoding) and encoding.token_to_chars(token)[0] < char:
            token += 1  # tokens straddling the boundary, e.g. both halves of a split CJK character
    return token


def _splits_at_added_tokens(tokenizer) -> dict[int, str] | None:
    """The added tokens (id -> text) when tokenizing a text equals tokenizing its stretches between
    added tokens apart, or None where the tokenizer's configuration does not guarantee it.

    Guaranteed when: the Rust backend is called as-is (_batch_tokenizer), special tokens are split
    out (not split_special_tokens), no added token strips neighbours or matches words only, no
    added token can match across another's first character or extend another (so a content can
    never merge with a template's special token), and the normalizer, pre-tokenizer, model and
    post-processor work on each stretch alone without adding anything at a stretch's start (a
    byte-level BPE such as GPT-2's, Llama 3's, Qwen2's, SmolLM's). Anything else tokenizes whole texts.
    """
    import json

    from transformers.tokenization_utils_tokenizers import TokenizersBackend

    if tokenizer.split_special_tokens or not isinstance(tokenizer, TokenizersBackend):
        return None
    if any(getattr(type(tokenizer), f) is not getattr(TokenizersBackend, f) for f in ("__call__", "_encode_plus")):
        return None
    config = json.loads(tokenizer.backend_tokenizer.to_str())

    def steps(node: dict | None, key: str) -> list[dict]:
        if node is None:
            return []
        return [s for child in node[key] for s in steps(child, key)] if node["type"] == "Sequence" else [node]

    normalizer_ok = all(n["type"] == "NFC" for n in steps(config.get("normalizer"), "normalizers"))
    pre = steps(config.get("pre_tokenizer"), "pretokenizers")
    pre_ok = any(p["type"] == "ByteLevel" for p in pre) and all(
        p["type"] in ("Split", "Digits") or (p["type"] == "ByteLevel" and not p.get("add_prefix_space")) for p in pre
    )
    model = config.get("model") or {}
    model_ok = model.get("type") == "BPE" and not model.get("dropout")
    post_ok = all(
        p["type"] == "TemplateProcessing" or (p["type"] == "ByteLevel" and not p.get("trim_offsets"))
        for p in steps(config.get("post_processor"), "processors")
    )
    added = config.get("added_tokens") or []
    texts = {a["content"] for a in added}
    firsts = {text[0] for text in texts if text}
    added_ok = all(text for text in texts) and not any(a["lstrip"] or a["rstrip"] or a["single_word"] for a in added)
    added_ok = (
        added_ok
        and not any(char in firsts for text in texts for char in text[1:])
        and not any(text[:i] in texts for text in texts for i in range(1, len(text)))
    )
    if not (normalizer_ok and pre_ok and model_ok and post_ok and added_ok):
        return None
    return {a["id"]: a["content"] for a in added}


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
        # Then a conversation's render is its skeleton filled in, with no jinja call, unless the
        # template's output can change between calls (the date, random text).
        self._render_free = self._skeletons_allowed and not _varies_between_renders(template_ast)
        self._skeletons: dict[tuple[str, ...], _Skeleton | None] = {}

    @cached_property
    def _added_tokens(self) -> dict[int, str] | None:
        """_splits_at_added_tokens, asked at the first skeleton (it reads the whole tokenizer's JSON:
        the chat tab builds an encoder per reply and never needs it)."""
        return _splits_at_added_tokens(self.tokenizer)

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

    def _tools_dropped(self, conversations: list[Conversation], first: int) -> list[int]:
        """The numbers (the first one is `first`) of the conversations that define or call tools
        the template would drop: they would train on text that does not hold the tools."""
        using = [number for number, c in enumerate(conversations, start=first) if uses_tools(c)]
        if not using:
            return []
        defines, calls = self.tool_support
        return [
            number
            for number in using
            if (conversation_tools(conversations[number - first]) and not defines)
            or (any(m.get("tool_calls") for m in conversations[number - first]) and not calls)
        ]

    def _refuse_dropped_tools(self, lacking: list[int]) -> None:
        """Refuse the examples _tools_dropped found (numbered from 1 in dataset order), all in one error."""
        if lacking:
            defines, calls = self.tool_support
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
        if skeleton is not None and self._render_free and self._added_tokens is not None:
            try:
                skeleton.segments = self._segments(skeleton, full)
                if skeleton.segments is not None and not self._segments_match(skeleton, roles):
                    skeleton.segments = None
            except Exception:  # noqa: BLE001 - any failure: this shape is tokenized as whole texts
                skeleton.segments = None
        self._skeletons[roles] = skeleton
        return skeleton

    def _segments(self, skeleton: _Skeleton, full: str) -> _Segments | None:
        """The skeleton cut into constant and variable parts at its added tokens, or None where a
        trained span's end depends on the contents (the template's text before it is only whitespace)."""
        backend = self.tokenizer.backend_tokenizer
        # The placeholder render as items in order: (start, end, literal text | message index | added token id).
        items, start = [], 0
        placeholders = [_PLACEHOLDER.format(slot) for slot in skeleton.slots]
        piece_starts = []
        for piece, placeholder, slot in zip(skeleton.pieces, [*placeholders, ""], [*skeleton.slots, None]):
            piece_starts.append(start)
            encoding = backend.encode(piece, add_special_tokens=False)
            cut = 0
            for token, (token_start, token_end) in zip(encoding.ids, encoding.offsets):
                if self._added_tokens.get(token) == piece[token_start:token_end]:
                    if token_start > cut:
                        items.append((start + cut, start + token_start, piece[cut:token_start]))
                    items.append((start + token_start, start + token_end, ("added", token)))
                    cut = token_end
            if len(piece) > cut:
                items.append((start + cut, start + len(piece), piece[cut:]))
            start += len(piece)
            if slot is not None:
                items.append((start, start + len(placeholder), slot))
                start += len(placeholder)
        # Parts: each added token alone, and each run of items between them.
        parts: list[list] = []
        for item in items:
            if isinstance(item[2], tuple) or not parts or isinstance(parts[-1][0][2], tuple):
                parts.append([item])
            else:
                parts[-1].append(item)
        layout, recipes, part_info = [], [], []  # part_info: (start, end, tokens if constant, offsets)
        for part in parts:
            if isinstance(part[0][2], tuple):
                ids, offsets = [part[0][2][1]], [(0, part[0][1] - part[0][0])]
            elif all(isinstance(item[2], str) for item in part):
                encoding = backend.encode("".join(item[2] for item in part), add_special_tokens=False)
                ids, offsets = encoding.ids, encoding.offsets
            else:
                ids = offsets = None
                recipes.append(tuple(item[2] for item in part))
            layout.append(ids)
            part_info.append((part[0][0], part[-1][1], ids, offsets, part))
        constant_tokens = sum(len(ids) for ids in layout if ids is not None)

        def locate(position: int, starts: bool) -> _Locator:
            """The boundary at `position` of the placeholder render (never inside a placeholder)."""
            constant = variable = 0
            for first, last, ids, offsets, part in part_info:
                inside = first <= position < last if starts else first < position <= last
                if not inside:
                    constant, variable = constant + len(ids or ()), variable + (ids is None)
                    continue
                if ids is not None:  # a constant part: count its tokens before the boundary
                    local = position - first
                    count = sum(1 for s, e in offsets if (e <= local if starts else s < local))
                    return constant + count, variable, -1, 0, ()
                if not starts and position == last:
                    return constant, variable + 1, -1, 0, ()
                # The literal text before the boundary (the item holding it: partly), and the contents.
                chars = sum(
                    min(end, position) - begin for begin, end, x in part if isinstance(x, str) and begin < position
                )
                contents = tuple(x for _, end, x in part if type(x) is int and end <= position)
                return constant, variable, variable, chars, contents
            return constant, variable, -1, 0, ()  # the end of the text

        spans = []
        for (prompt_piece, prompt_chars), (through_piece, through_chars) in (
            [] if self.train_on_prompt else skeleton.bounds
        ):
            kept = skeleton.pieces[through_piece][:through_chars].rstrip()
            if not kept:
                return None  # the reply's end is found by stripping whitespace off the contents
            prompt_end, reply_end = piece_starts[prompt_piece] + prompt_chars, piece_starts[through_piece] + len(kept)
            spans.append((locate(prompt_end, True), locate(reply_end, False)))
        return _Segments(layout, recipes, constant_tokens, spans)

    def _segments_match(self, skeleton: _Skeleton, roles: tuple[str, ...]) -> bool:
        """On probe contents made to break them, do the skeleton's fill and its parts' tokens and
        mask equal the template's render tokenized whole (the skeleton's bounds come from prefix renders)?"""
        added = sorted(set(self._added_tokens.values()))[:4]
        probes = [
            *_SEGMENT_PROBES,
            *(f"{text}{text[:-1]}" for text in added),
            *(f"{text[1:]} {text}" for text in added),
        ]
        tokenize = _batch_tokenizer(self.tokenizer)
        for shift in range(0, len(probes), 3):
            messages = [{"role": r, "content": probes[(shift + i) % len(probes)]} for i, r in enumerate(roles)]
            contents = [m["content"] for m in messages]
            text = self.render(messages)
            if skeleton.fill(contents) != text:
                return False
            spans = [(0, len(text))] if self.train_on_prompt else skeleton.spans(contents, text)
            [whole] = tokenize([text])
            want = _trained_mask([spans], [len(text)], np.array([len(whole)]), np.array(whole.offsets).reshape(-1, 2))
            offsets = np.array(whole.offsets)
            if len(whole) and not (np.all(offsets[:, 1] > offsets[:, 0]) and np.all(np.diff(offsets, axis=0) >= 0)):
                return False  # offsets out of order or empty: _tokens_before_char does not apply
            plan = _ChunkPlan(self.train_on_prompt)
            plan.add_parts(skeleton.segments, contents)
            got = plan.assemble(tokenize(plan.texts))
            if got.input_ids.tolist() != whole.ids or got.trained.tolist() != want.tolist():
                return False
        return True

    def _plain_skeleton(self, messages: Conversation) -> _Skeleton | None:
        """The skeleton of these messages where one may apply: plain {role, content} messages with
        non-empty contents (tools, tool calls and loss weights take the prefix path)."""
        if not self._skeletons_allowed:
            return None
        for m in messages:
            if len(m) != 2 or type(m.get("content")) is not str or not m["content"]:
                return None
        return self._skeleton(tuple([m["role"] for m in messages]))

    def _text_and_spans(self, conversation: Conversation) -> tuple[str, list[tuple[int, int]]]:
        messages = with_system_prompt(conversation, self.system_prompt)
        skeleton = self._plain_skeleton(messages)
        contents = [m["content"] for m in messages] if skeleton is not None else []
        if skeleton is not None and self._render_free:
            text = skeleton.fill(contents)
        else:
            text = self.render(messages)
            if skeleton is not None and skeleton.fill(contents) != text:
                skeleton = None  # the template did not copy these contents verbatim
        trained = [m.get("loss_weight", 1) != 0 for m in messages if m["role"] == "assistant"]
        if self.train_on_prompt and all(trained):
            return text, [(0, len(text))]
        spans = skeleton.spans(contents, text) if skeleton else self._spans_by_prefix_renders(messages, text)
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
    def encode(self, conversations: Iterable[Conversation]) -> list[Encoded]:
        """Tokenize many conversations: encode_chunks, one Encoded per conversation."""
        return [example for chunk in self.encode_chunks(conversations) for example in chunk.examples()]

    def encode_chunks(self, conversations: Iterable[Conversation]) -> Iterator[EncodedChunk]:
        """Tokenize many conversations in batch calls (the Rust tokenizer runs them in parallel),
        yielding them in order, ENCODE_CHUNK at a time, as flat arrays.

        Pipelined by chunks: while worker threads tokenize the next BATCHES_IN_FLIGHT chunks (the Rust
        tokenizer releases the GIL), this thread assembles the one before and takes and renders the next. Taken from
        a lazy iterable (core.data.DatasetStream), the next chunk is read from the file then too.

        Refusals wait for the end of `conversations`: examples whose tools the template would drop
        (every one named in one error), else the first example the template itself refuses. So the
        dataset's own problems, which a DatasetStream raises at its end, come first, as when it was
        read whole before; no chunk is yielded from the first refused example on.
        """
        tokenize = _batch_tokenizer(self.tokenizer)
        examples = iter(conversations)
        lacking: list[int] = []  # examples whose tools the template would drop
        refusal: UserInputError | None = None
        first = 1  # the number of the chunk's first example
        pending: collections.deque[tuple[_ChunkPlan, Future]] = collections.deque()
        with ThreadPoolExecutor(max_workers=BATCHES_IN_FLIGHT) as tokenizer_threads:
            while chunk := list(itertools.islice(examples, ENCODE_CHUNK)):
                lacking += self._tools_dropped(chunk, first)
                if not lacking and refusal is None:  # else only read on, to name every refused example
                    try:
                        plan = self._plan(chunk, first)
                    except UserInputError as err:
                        refusal = err
                    else:
                        pending.append((plan, tokenizer_threads.submit(tokenize, plan.texts)))
                        if len(pending) > BATCHES_IN_FLIGHT:  # the oldest, while the others run
                            plan, batch = pending.popleft()
                            yield plan.assemble(batch.result())
                first += len(chunk)
            self._refuse_dropped_tools(lacking)
            if refusal is not None:
                raise refusal
            while pending:
                plan, batch = pending.popleft()
                yield plan.assemble(batch.result())

    def _plan(self, conversations: list[Conversation], first: int) -> _ChunkPlan:
        """What one chunk of conversations (numbered from `first`) sends to the tokenizer."""
        plan = _ChunkPlan(self.train_on_prompt)
        system_prompt = self.system_prompt
        for number, conversation in enumerate(conversations, start=first):
            messages = with_system_prompt(conversation, system_prompt)
            skeleton = self._plain_skeleton(messages)
            if skeleton is not None and skeleton.segments is not None:
                plan.add_parts(skeleton.segments, [m["content"] for m in messages])
            else:
                plan.add_text(*self._rendered(number, conversation))
        return plan


@dataclass
class EncodedChunk:
    """Consecutive tokenized conversations as flat arrays, example after example."""

    lengths: np.ndarray  # int64 [examples]: tokens per example
    trained: np.ndarray  # bool [tokens]
    token_ids: Callable[[], Iterator[list[int]]] = field(repr=False)  # the ids, part by part, in order

    @cached_property
    def input_ids(self) -> np.ndarray:
        """int64 [tokens], read from the Encodings when first asked (the length analysis never asks)."""
        return np.fromiter(itertools.chain.from_iterable(self.token_ids()), np.int64, int(self.lengths.sum()))

    def examples(self) -> list[Encoded]:
        """One Encoded per example (views into the flat arrays)."""
        ends = np.cumsum(self.lengths).tolist()
        ids, trained = self.input_ids, self.trained
        return [Encoded(ids[start:end], trained[start:end]) for start, end in zip([0, *ends], ends)]


class _ChunkPlan:
    """The texts one chunk sends to the tokenizer, and how to read its examples back: a whole
    rendered text with its trained character spans, or a skeleton's variable parts (_Segments)."""

    def __init__(self, train_on_prompt: bool):
        self.train_on_prompt = train_on_prompt
        self.texts: list[str] = []
        # Per example: its _Segments (None: one whole text), its first text's index, and its
        # contents (by parts) or (spans, text length) (whole).
        self.segments: list[_Segments | None] = []
        self.first_text: list[int] = []
        self.details: list = []

    def add_text(self, text: str, spans: list[tuple[int, int]]) -> None:
        self.segments.append(None)
        self.first_text.append(len(self.texts))
        self.details.append((spans, len(text)))
        self.texts.append(text)

    def add_parts(self, segments: _Segments, contents: list[str]) -> None:
        self.segments.append(segments)
        self.first_text.append(len(self.texts))
        self.details.append(contents)
        self.texts += segments.texts(contents)

    def assemble(self, encodings: list) -> EncodedChunk:
        """The chunk's examples from the Encodings of its texts: vectorised over the examples of
        one skeleton, one char_to_token per boundary inside a variable part."""
        text_tokens = np.fromiter(map(len, encodings), np.int64, len(encodings))
        first_text = np.array(self.first_text, np.int64)
        lengths = np.empty(len(self.segments), np.int64)
        groups: dict[int, list[int]] = {}  # examples by skeleton (id of its _Segments; 0: whole texts)
        for example, segments in enumerate(self.segments):
            groups.setdefault(id(segments) if segments is not None else 0, []).append(example)
        by_parts = []  # (segments, examples, [examples, parts + 1] tokens before each variable part)
        for key, members in groups.items():
            examples = np.array(members, np.int64)
            if key == 0:
                lengths[examples] = text_tokens[first_text[examples]]
                continue
            segments = self.segments[members[0]]
            part_tokens = text_tokens[first_text[examples][:, None] + np.arange(len(segments.recipes))]
            tokens_before = np.zeros((len(members), len(segments.recipes) + 1), np.int64)
            np.cumsum(part_tokens, axis=1, out=tokens_before[:, 1:])
            lengths[examples] = segments.constant_tokens + tokens_before[:, -1]
            by_parts.append((segments, members, examples, tokens_before))
        bases = _cumsum_before(lengths)
        total = int(lengths.sum())
        span_starts, span_ends = [], []
        for segments, members, examples, tokens_before in by_parts:
            if self.train_on_prompt:
                span_starts.append(bases[examples])
                span_ends.append(bases[examples] + lengths[examples])
                continue
            for first, past in segments.spans:
                span_starts.append(
                    bases[examples] + self._token_positions(first, True, members, tokens_before, encodings)
                )
                span_ends.append(
                    bases[examples] + self._token_positions(past, False, members, tokens_before, encodings)
                )
        # Trained where at least one span covers the token: +1 where a span starts, -1 past its end.
        trained = np.zeros(total, bool)
        if span_starts:
            starts, ends = np.concatenate(span_starts), np.concatenate(span_ends)
            keep = ends > starts
            cover = np.bincount(starts[keep], minlength=total + 1) - np.bincount(ends[keep], minlength=total + 1)
            trained = np.cumsum(cover[:total]) > 0
        if 0 in groups:
            whole = groups[0]
            chosen = [encodings[self.first_text[e]] for e in whole]
            counts = lengths[whole]
            # The [tokens, 2] character offsets of the whole texts as one array.
            offsets = np.fromiter(
                itertools.chain.from_iterable(itertools.chain.from_iterable(e.offsets for e in chosen)),
                np.int64,
                2 * int(counts.sum()),
            ).reshape(-1, 2)
            positions = np.arange(int(counts.sum())) + np.repeat(bases[whole] - _cumsum_before(counts), counts)
            spans, text_lengths = zip(*[self.details[e] for e in whole])
            trained[positions] = _trained_mask(list(spans), list(text_lengths), counts, offsets)
        plan = self

        def token_ids() -> Iterator[list[int]]:
            for segments, at in zip(plan.segments, plan.first_text):
                if segments is None:
                    yield encodings[at].ids
                else:
                    yield from segments.ids(encodings[at : at + len(segments.recipes)])

        return EncodedChunk(lengths, trained, token_ids)

    def _token_positions(
        self, locator: _Locator, starts: bool, members: list[int], tokens_before: np.ndarray, encodings: list
    ) -> np.ndarray:
        """[examples] a span boundary's token position in each example (of one skeleton)."""
        constant, before, part, chars, messages = locator
        positions = constant + tokens_before[:, before]
        if part >= 0:
            first_text, details = self.first_text, self.details
            local = [
                _tokens_before_char(
                    encodings[first_text[e] + part],
                    chars + sum(len(details[e][m]) for m in messages) if messages else chars,
                    starts,
                )
                for e in members
            ]
            positions = positions + np.array(local, np.int64)
        return positions


def _cumsum_before(counts: np.ndarray) -> np.ndarray:
    """[n] the sum of the counts before each one."""
    return np.cumsum(counts) - counts


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
        # Only what differs is set: a setter while another batch of ours is being encoded would
        # find the backend borrowed (encode_chunks runs BATCHES_IN_FLIGHT at once).
        if backend.truncation is not None:
            backend.no_truncation()
        if backend.padding is not None:
            backend.no_padding()
        if backend.encode_special_tokens != tokenizer.split_special_tokens:
            backend.encode_special_tokens = tokenizer.split_special_tokens
        return backend.encode_batch(texts, add_special_tokens=False)

    return tokenize


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
