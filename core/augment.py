"""Paraphrase augmentation: more user phrasings per fact for a FAQ fine-tune.

A support bot must give a fact however the customer asks for it, and one phrasing per fact teaches
the words rather than the fact (DESIGN: varied phrasings beat more epochs). For every user turn
this writes new conversations in which that turn is said differently; the assistant turns (and
the system prompt) stay as they are.

Generators write the phrasings:
  rules   offline and deterministic, English and Chinese: greetings/closings, indirect questions,
          reordering, a customer-service synonym lexicon, casing, punctuation and typo noise
          (core/paraphrase_rules.py).
  openai  any OpenAI-compatible chat endpoint (OpenAI, Ollama, vLLM, llama.cpp, LM Studio).
  local   a local instruct model through transformers (1-3B models on a GPU; the embedded 135M
          default model cannot paraphrase).
The same filters then drop phrasings that lost a fact (number, amount, email, code, name), copies
of an original, near-duplicates (MinHash LSH) and anything close to a held-out probe question, and
a per-fact quota keeps the facts balanced.

    python -m core.augment DATASET --out OUT.jsonl [--generator rules|openai|local] [--per-turn N]
        [--families a,b] [--probes PROBES.jsonl] [--base-url URL --model NAME --api-key-env VAR]
        [--seed N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from datasketch import MinHash, MinHashLSH

from core.config import TrainConfig
from core.data import Conversation, Message, load_dataset
from core.errors import UserInputError
from core.paraphrase_rules import (
    CJK,
    FAMILIES,
    RulesGenerator,
    detect_lang,
    missing_facts,
    normalise,
    parse_families,
)
from core.paths import write_text_atomically

if TYPE_CHECKING:  # imported when used: the rules generator and the CLI's --help never need it
    import openai

GENERATORS = ("rules", "openai", "local")
DEFAULT_PER_TURN = 8
MAX_PER_TURN = 64
DEFAULT_SEED = 42
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
# Local servers (Ollama, vLLM, llama.cpp, LM Studio) ignore the key, but the client requires one.
PLACEHOLDER_API_KEY = "not-needed"
ASK_FACTOR = 2  # ask for twice the quota: the filters typically drop a share of what comes back
FACT_LABEL_CHARS = 80

# Near-duplicates: exact Jaccard similarity of character shingles of the normalised text (case,
# punctuation and spacing removed), 3-grams for English, 2-grams for Chinese (a Chinese word is about
# two characters). At 0.8 most typo-only and many wrapper-only copies are dropped and reworded
# questions kept (the shares measured on the demo FAQ are in bench/README.md). Jaccard cannot
# separate a one-character edit from an added greeting on a short text: both change a few shingles.
NEAR_DUPLICATE_JACCARD = 0.8
# Leakage is stricter (lower): a phrasing close to a held-out probe question makes the probe score
# measure memory rather than generalisation, and one phrasing less costs little. At 0.6 a probe
# question with a greeting added (median 0.66) or asked indirectly (median 0.60) counts as leaked.
LEAKAGE_JACCARD = 0.6
LSH_MARGIN = 0.15  # the LSH index finds candidates this far below the threshold; exact Jaccard decides
NUM_PERM = 128


# =================================================================================== generators
class Generator(Protocol):
    """Writes up to `n` phrasings of one user message, in language `lang` ("en" or "zh")."""

    name: str

    def generate(self, text: str, n: int, lang: str, seed: int = 0) -> list[str]: ...


class JunkOutput(UserInputError):
    """A generator answered, but nothing usable came back for this message; other turns may work."""


# ---------------------------------------------------------------------------- model generators
QUOTES = "\"'“”‘’「」『』"
LIST_LINE = re.compile(r"^\s*(?:\d+[.)、:]|[-*•])\s+(.+?)\s*$")
MAX_PHRASING_CHARS = 500


def rewrite_messages(text: str, n: int, lang: str) -> list[Message]:
    """The request both model generators send: n rewrites as a JSON list, every fact kept."""
    language = "Simplified Chinese" if lang == "zh" else "English"
    return [
        {"role": "system", "content": "You write training data for a customer-service chatbot."},
        {
            "role": "user",
            "content": (
                f"Rewrite the customer message below in {n} different ways a real customer might write "
                f"it. Keep its meaning and every fact exactly as written: numbers, prices, dates, emails, "
                f"codes, product and company names. Vary the wording and the sentence shape, not the "
                f"request. Write in {language}. Answer with only a JSON list of {n} strings.\n\n"
                f"Customer message: {text}"
            ),
        },
    ]


def _json_list(reply: str) -> list[str] | None:
    start, end = reply.find("["), reply.rfind("]")
    if start < 0 or end <= start:
        return None
    try:
        value = json.loads(reply[start : end + 1])
    except json.JSONDecodeError:
        return None
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else None


def parse_phrasings(reply: str) -> list[str]:
    """Rewrites in a model's reply: a JSON list of strings (code fences or a wrapping object are
    fine), else numbered or bulleted lines. Empty, letterless and overlong items are dropped."""
    items = _json_list(reply)
    if items is None:
        items = [m[1] for m in map(LIST_LINE.match, reply.splitlines()) if m]
    phrasings = []
    for item in items:
        item = re.sub(r"\s+", " ", item).strip().strip(QUOTES).strip()
        if item and len(item) <= MAX_PHRASING_CHARS and re.search(r"[^\W\d_]", item):
            phrasings.append(item)
    return list(dict.fromkeys(phrasings))


def _reply_content(response: Any) -> str | None:
    """choices[0].message.content, or None when the server's answer does not have that shape."""
    try:
        content = response.choices[0].message.content
    except (AttributeError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) else None


class OpenAIGenerator:
    """Phrasings from an OpenAI-compatible chat endpoint (OpenAI, Ollama, vLLM, llama.cpp, LM Studio)."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = DEFAULT_API_KEY_ENV,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        temperature: float = 0.9,
    ):
        from openai import OpenAI

        self.base_url, self.model, self.api_key_env = base_url, model, api_key_env
        self.timeout_s, self.max_retries, self.temperature = timeout_s, max_retries, temperature
        self.has_key = bool(os.environ.get(api_key_env))
        self._client = OpenAI(
            base_url=base_url,
            api_key=os.environ.get(api_key_env) or PLACEHOLDER_API_KEY,
            timeout=timeout_s,
            max_retries=max_retries,
        )

    @property
    def where(self) -> str:
        return f"endpoint {self.base_url} (model '{self.model}')"

    def _status_error(self, err: openai.APIStatusError) -> UserInputError:
        detail = " ".join(str(getattr(err, "message", err)).split())[:200]
        hint = ""
        if err.status_code in (401, 403):
            hint = (
                f"; ${self.api_key_env} holds the key"
                if self.has_key
                else f"; no key was sent (${self.api_key_env} is not set)"
            )
        elif err.status_code == 404:
            hint = "; check base_url (it usually ends in /v1) and the model name"
        return UserInputError(f"{self.where}: HTTP {err.status_code}: {detail}{hint}")

    def _ask(self, messages: list[Message], seed: int) -> str:
        import openai

        tries = f"{self.max_retries + 1} tr{'y' if self.max_retries == 0 else 'ies'}"
        try:
            response = self._client.chat.completions.create(
                model=self.model, messages=messages, temperature=self.temperature, seed=seed
            )
        except openai.APITimeoutError:
            raise UserInputError(f"{self.where}: no answer within {self.timeout_s:g} s ({tries})") from None
        except openai.APIConnectionError as err:
            cause = err.__cause__ or err
            raise UserInputError(
                f"{self.where}: cannot connect ({type(cause).__name__}: {cause}; {tries}); "
                f"is the server running and the base_url right?"
            ) from None
        except openai.APIStatusError as err:
            raise self._status_error(err) from None
        except openai.APIResponseValidationError as err:
            raise UserInputError(f"{self.where}: the response is not a chat completion ({err.message})") from None
        content = _reply_content(response)
        if content is None:  # a wrong base_url (a web page, another API) answers every turn like this
            body = f": {response[:160]!r}" if isinstance(response, str) else ""
            raise UserInputError(
                f"{self.where}: the response is not a chat completion (no choices[0].message.content){body}"
            )
        return content

    def generate(self, text: str, n: int, lang: str, seed: int = 0) -> list[str]:
        reply = self._ask(rewrite_messages(text, n, lang), seed)
        phrasings = parse_phrasings(reply)
        if not phrasings:
            raise JunkOutput(
                f"{self.where}: the reply holds no list of rewrites (a JSON list of strings "
                f"or numbered lines was asked for): {reply[:160]!r}"
            )
        return phrasings[:n]


class LocalGenerator:
    """Phrasings sampled from a local instruct model (HF folder, .gguf or hub id) via transformers."""

    name = "local"

    def __init__(self, model: str, max_new_tokens: int = 512, temperature: float = 0.9, top_p: float = 0.95):
        from core.models import load_model, load_tokenizer, resolve_model
        from core.template import ChatEncoder

        self.model_name, self.max_new_tokens = model, max_new_tokens
        self.temperature, self.top_p = temperature, top_p
        try:
            source = resolve_model(model)
            self._tokenizer = load_tokenizer(source)
            self._model = load_model(source).eval()
        except UserInputError:  # already names the model; re-raised as is (it is a ValueError too)
            raise
        except (OSError, ValueError, RuntimeError, KeyError, ImportError) as err:  # unusable weights/config
            reason = " ".join(str(err).split())[:300] or type(err).__name__
            raise UserInputError(f"Could not load model '{model}' for paraphrasing: {reason}") from None
        self._encoder = ChatEncoder(self._tokenizer)

    def generate(self, text: str, n: int, lang: str, seed: int = 0) -> list[str]:
        import torch

        prompt = self._encoder.prompt_for_reply(rewrite_messages(text, n, lang))
        inputs = self._tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self._model.device)
        torch.manual_seed(seed)
        with torch.no_grad():
            output = self._model.generate(
                **inputs,
                do_sample=True,
                temperature=self.temperature,
                top_p=self.top_p,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=self._tokenizer.pad_token_id,
            )
        reply = self._tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        phrasings = parse_phrasings(reply)
        if not phrasings:
            raise JunkOutput(f"model '{self.model_name}': the reply holds no list of rewrites: {reply[:160]!r}")
        return phrasings[:n]


# ------------------------------------------------------------------------------ make_generator
def _check_int(low: int, high: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
        return None if ok else f"must be a whole number from {low} to {high}"

    return check


def _check_number(low: float, high: float) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high
        return None if ok else f"must be a number from {low:g} to {high:g}"

    return check


def _check_text(pattern: str, what: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if isinstance(value, str) and re.fullmatch(pattern, value.strip()) else f"must be {what}"

    return check


def _check_families(value: Any) -> str | None:
    try:
        parse_families(value if isinstance(value, (str, list, tuple)) else "")
    except UserInputError:
        return f"must be a list (or comma-separated text) of: {', '.join(FAMILIES)}"
    return None


SPEC_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "per_turn": _check_int(1, MAX_PER_TURN),
    "seed": _check_int(0, 2**31 - 1),
    "families": _check_families,
    "base_url": _check_text(r"https?://\S+", "an http:// or https:// URL, e.g. http://127.0.0.1:11434/v1"),
    "model": _check_text(r"\S.*", "a model name (openai) or a model folder / hub id (local)"),
    "api_key_env": _check_text(r"[A-Za-z_][A-Za-z0-9_]*", "an environment variable name, e.g. OPENAI_API_KEY"),
    "timeout_s": _check_number(0.1, 3600),
    "max_retries": _check_int(0, 10),
    "temperature": _check_number(0, 2),
    "max_new_tokens": _check_int(16, 4096),
}
COMMON_KEYS = ("generator", "per_turn", "seed")  # per_turn and seed are read by augment_dataset
GENERATOR_KEYS = {
    "rules": ("families",),
    "openai": ("base_url", "model", "api_key_env", "timeout_s", "max_retries", "temperature"),
    "local": ("model", "max_new_tokens", "temperature"),
}
REQUIRED_KEYS = {"rules": (), "openai": ("base_url", "model"), "local": ("model",)}


def _spec_problems(spec: dict[str, Any], kind: str) -> list[str]:
    allowed = COMMON_KEYS + GENERATOR_KEYS[kind]
    problems = [
        f"unknown key '{key}' for generator '{kind}'; allowed keys: {', '.join(allowed)}"
        for key in spec
        if key not in allowed
    ]
    problems += [f"'{key}' is required for generator '{kind}'" for key in REQUIRED_KEYS[kind] if key not in spec]
    for key in allowed:
        problem = SPEC_CHECKS[key](spec[key]) if key in spec and key in SPEC_CHECKS else None
        if problem:
            problems.append(f"'{key}' {problem}; got {json.dumps(spec[key], ensure_ascii=False, default=str)[:80]}")
    return problems


def config_spec(config: TrainConfig) -> dict[str, Any]:
    """The generator spec a TrainConfig's augment_* keys describe."""
    spec: dict[str, Any] = {"generator": config.augment, "per_turn": config.augment_per_turn, "seed": config.seed}
    if config.augment == "openai":
        spec.update(
            base_url=config.augment_base_url, model=config.augment_model, api_key_env=config.augment_api_key_env
        )
    elif config.augment == "local":
        spec["model"] = config.augment_model
    return spec


def make_generator(spec: dict[str, Any]) -> Generator:
    """A generator from a config-style dict, e.g. {"generator": "rules", "per_turn": 8} or
    {"generator": "openai", "base_url": ..., "model": ..., "api_key_env": ...}. Every problem is
    reported at once; per_turn and seed are validated here and used by augment_dataset."""
    if not isinstance(spec, dict):
        raise UserInputError(
            f'augmentation spec must be a mapping like {{"generator": "rules"}}, got {type(spec).__name__}'
        )
    kind = spec.get("generator", "rules")
    if kind not in GENERATORS:
        raise UserInputError(f"augmentation spec: 'generator' must be one of {', '.join(GENERATORS)}; got {kind!r}")
    problems = _spec_problems(spec, kind)
    if problems:
        raise UserInputError(f"augmentation spec ({kind} generator): {len(problems)} problem(s):", problems)
    options = {key: spec[key] for key in GENERATOR_KEYS[kind] if key in spec}
    if kind == "rules":
        return RulesGenerator(**options)
    if kind == "openai":
        return OpenAIGenerator(**options)
    return LocalGenerator(**options)


# ===================================================================================== filters
def shingles(text: str) -> set[str]:
    """Character n-grams of the normalised text: 2 for Chinese, 3 otherwise (see NEAR_DUPLICATE_JACCARD)."""
    norm = normalise(text)
    size = 2 if CJK.search(norm) else 3
    return {norm[i : i + size] for i in range(max(len(norm) - size + 1, 1))}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


@cache
def _lsh_params(threshold: float) -> tuple[int, int]:
    """Bands and rows for a threshold; datasketch optimises them by numeric integration (~10 ms),
    too slow to repeat for one index per fact."""
    index = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    return index.b, index.r


class NearDuplicates:
    """Texts added so far; `match` names one that a new text nearly copies. The LSH index finds
    candidates in sub-linear time; exact Jaccard on the shingles decides, so results do not depend
    on MinHash's estimation noise."""

    def __init__(self, threshold: float, texts: Sequence[str] = ()):
        self.threshold = threshold
        self._index = MinHashLSH(num_perm=NUM_PERM, params=_lsh_params(max(threshold - LSH_MARGIN, 0.1)))
        self._entries: list[tuple[str, set[str]]] = []
        for text in texts:
            self.add(text)

    @staticmethod
    def _minhash(grams: set[str]) -> MinHash:
        minhash = MinHash(num_perm=NUM_PERM)
        minhash.update_batch([g.encode("utf-8") for g in grams])
        return minhash

    def add(self, text: str) -> None:
        grams = shingles(text)
        self._index.insert(str(len(self._entries)), self._minhash(grams))
        self._entries.append((text, grams))

    def match(self, text: str) -> str | None:
        grams = shingles(text)
        for key in sorted(self._index.query(self._minhash(grams)), key=int):
            stored, stored_grams = self._entries[int(key)]
            if jaccard(grams, stored_grams) >= self.threshold:
                return stored
        return None


# ==================================================================================== planning
@dataclass
class Turn:
    """One user turn to augment: where it is, which fact it asks for, how many phrasings it gets."""

    conversation: int  # index in the dataset
    message: int  # index of the user message in the conversation
    fact: str  # normalised assistant reply that follows: the fact this turn asks for
    quota: int = 0


def user_turns(conversations: Sequence[Conversation]) -> list[Turn]:
    """Every user turn with its fact. A fact is the (normalised) reply that follows the turn: for a
    single-exchange FAQ that is the conversation's final answer; in a longer chat an early
    "Hello!" asks for the greeting, not for the fact at the end."""
    return [
        Turn(c, m, normalise(conversation[m + 1]["content"]))
        for c, conversation in enumerate(conversations)
        for m, message in enumerate(conversation)
        if message["role"] == "user"
    ]


def assign_quotas(turns: list[Turn], per_turn: int) -> None:
    """Balance: every fact aims at the same total of phrasings, the larger of the biggest fact's
    originals and what the smallest fact reaches with per_turn each; no turn gets more than per_turn."""
    groups: dict[str, list[Turn]] = {}
    for turn in turns:
        groups.setdefault(turn.fact, []).append(turn)
    sizes = [len(group) for group in groups.values()]
    target = max(max(sizes), min(sizes) * (1 + per_turn))
    for group in groups.values():
        extra = min(target - len(group), len(group) * per_turn)
        for position, turn in enumerate(group):
            turn.quota = extra // len(group) + (1 if position < extra % len(group) else 0)


# ===================================================================================== running
@dataclass
class FactCount:
    fact: str  # the start of the answer
    before: int  # user phrasings in the source
    after: int  # with the kept generated ones


@dataclass
class AugmentReport:
    generator: str
    source: str
    output: str  # "" for a preview
    source_conversations: int = 0
    output_conversations: int = 0
    turns_augmented: int = 0  # user turns that received new phrasings
    turns_failed: int = 0
    generated: int = 0  # phrasings the generator returned
    kept: int = 0  # new conversations written
    removed_missing_facts: int = 0
    removed_copies: int = 0
    removed_near_duplicates: int = 0
    removed_leakage: int = 0
    unused: int = 0  # beyond a turn's quota (more is asked for than needed, to cover the filters)
    leakage: list[dict[str, str]] = field(default_factory=list)  # {"phrasing", "probe"} removed
    facts: list[FactCount] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        lines = [
            f"{self.source} -> {self.output or '(preview)'} with the {self.generator} generator",
            f"conversations: {self.source_conversations} -> {self.output_conversations}  "
            f"(+{self.kept} from {self.turns_augmented} user turns)",
            f"generated {self.generated}: kept {self.kept}, removed {self.removed_copies} copies, "
            f"{self.removed_near_duplicates} near-duplicates, {self.removed_missing_facts} that lost a fact, "
            f"{self.removed_leakage} too close to a probe question; {self.unused} not needed",
            "phrasings per fact (before -> after):",
            *(f"  {f.before:4d} -> {f.after:<4d} {f.fact}" for f in self.facts),
        ]
        lines += [f"leaked (removed): {item['phrasing']!r} ~ probe {item['probe']!r}" for item in self.leakage]
        lines += [f"error: {error}" for error in self.errors]
        return "\n".join(lines)


@dataclass
class FactPhrasings:
    fact: str  # the answer
    originals: list[str]
    phrasings: list[str]  # kept generated phrasings


@dataclass
class AugmentPreview:
    facts: list[FactPhrasings]
    report: AugmentReport


@dataclass
class _Outcome:
    turns: list[Turn]
    phrasings: dict[int, list[str]]  # turn position -> kept phrasings
    report: AugmentReport


def _where(turn: Turn, conversations: Sequence[Conversation]) -> str:
    text = conversations[turn.conversation][turn.message]["content"]
    short = text if len(text) <= 50 else text[:50] + "..."
    return f"conversation {turn.conversation + 1}, message {turn.message + 1} ({short!r})"


class _Filter:
    """The checks a generated phrasing passes, in order, counting what each removes."""

    def __init__(
        self,
        turns: list[Turn],
        conversations: Sequence[Conversation],
        probe_questions: Sequence[str],
        report: AugmentReport,
    ):
        self.report = report
        self.copies: dict[str, set[str]] = {}
        self.near: dict[str, NearDuplicates] = {}
        for turn in turns:  # per fact: near-identical questions of two facts teach the difference
            text = conversations[turn.conversation][turn.message]["content"]
            self.copies.setdefault(turn.fact, set()).add(normalise(text))
            self.near.setdefault(turn.fact, NearDuplicates(NEAR_DUPLICATE_JACCARD)).add(text)
        self.probes = NearDuplicates(LEAKAGE_JACCARD, [q for q in probe_questions if q.strip()])

    def _passes(self, source: str, phrasing: str, fact: str) -> bool:
        report = self.report
        if missing_facts(source, phrasing):
            report.removed_missing_facts += 1
        elif normalise(phrasing) in self.copies[fact]:
            report.removed_copies += 1
        elif (probe := self.probes.match(phrasing)) is not None:
            report.removed_leakage += 1
            report.leakage.append({"phrasing": phrasing, "probe": probe})
        elif self.near[fact].match(phrasing) is not None:
            report.removed_near_duplicates += 1
        else:
            return True
        return False

    def keep(self, source: str, candidates: list[str], fact: str, quota: int) -> list[str]:
        """Up to `quota` candidates that pass, in order; each kept one joins the fact's index."""
        kept = []
        self.report.generated += len(candidates)
        for position, phrasing in enumerate(candidates):
            if len(kept) == quota:
                self.report.unused += len(candidates) - position
                break
            if self._passes(source, phrasing, fact):
                kept.append(phrasing)
                self.near[fact].add(phrasing)
        return kept


def _generate(
    conversations: Sequence[Conversation],
    turns: list[Turn],
    generator: Generator,
    checks: _Filter,
    seed: int,
    progress: Callable[[int, int], None] | None,
    report: AugmentReport,
) -> dict[int, list[str]]:
    """Kept phrasings per turn position, for every turn with a quota. A JunkOutput skips one turn;
    any other error (endpoint down, model broken) stops, keeping what succeeded before it."""
    jobs = [position for position, turn in enumerate(turns) if turn.quota > 0]
    phrasings: dict[int, list[str]] = {}
    for done, position in enumerate(jobs, start=1):
        turn = turns[position]
        source = conversations[turn.conversation][turn.message]["content"]
        try:
            candidates = generator.generate(source, turn.quota * ASK_FACTOR, detect_lang(source), seed=seed + done)
        except JunkOutput as err:
            report.errors.append(f"{_where(turn, conversations)}: {err}")
            report.turns_failed += 1
        except UserInputError as err:
            report.errors.append(f"{_where(turn, conversations)}: {err}")
            left = len(jobs) - done
            if left:
                report.errors.append(f"stopped: {left} later user turn(s) not attempted")
            report.turns_failed += 1 + left
            break
        else:
            phrasings[position] = checks.keep(source, candidates, turn.fact, turn.quota)
        if progress is not None:
            progress(done, len(jobs))
    return phrasings


def _run(
    conversations: Sequence[Conversation],
    generator: Generator,
    per_turn: int,
    probe_questions: Sequence[str],
    seed: int,
    progress: Callable[[int, int], None] | None,
    report: AugmentReport,
) -> _Outcome:
    """Plan the quotas, generate and filter, and fill in the report's counts."""
    problem = SPEC_CHECKS["per_turn"](per_turn)
    if problem:
        raise UserInputError(f"per_turn {problem}; got {per_turn!r}")
    turns = user_turns(conversations)
    assign_quotas(turns, per_turn)
    checks = _Filter(turns, conversations, probe_questions, report)
    phrasings = _generate(conversations, turns, generator, checks, seed, progress, report)
    if not phrasings and report.errors:
        raise UserInputError(f"{generator.name} generator: no user turn could be augmented", report.errors)
    report.turns_augmented = sum(1 for kept in phrasings.values() if kept)
    report.kept = sum(len(kept) for kept in phrasings.values())
    report.source_conversations = len(conversations)
    report.output_conversations = len(conversations) + report.kept
    report.facts = _fact_counts(turns, phrasings, conversations)
    return _Outcome(turns, phrasings, report)


def _fact_counts(
    turns: list[Turn], phrasings: dict[int, list[str]], conversations: Sequence[Conversation]
) -> list[FactCount]:
    counts: dict[str, FactCount] = {}
    for position, turn in enumerate(turns):
        if turn.fact not in counts:
            answer = conversations[turn.conversation][turn.message + 1]["content"]
            label = answer if len(answer) <= FACT_LABEL_CHARS else answer[:FACT_LABEL_CHARS] + "..."
            counts[turn.fact] = FactCount(" ".join(label.split()), 0, 0)
        counts[turn.fact].before += 1
        counts[turn.fact].after += 1 + len(phrasings.get(position, []))
    return list(counts.values())


def _new_conversations(outcome: _Outcome, conversations: Sequence[Conversation]) -> list[Conversation]:
    """One conversation per kept phrasing: the source with that user turn replaced, nothing else."""
    new = []
    for position, kept in sorted(outcome.phrasings.items()):
        turn = outcome.turns[position]
        for phrasing in kept:
            conversation = [dict(message) for message in conversations[turn.conversation]]
            conversation[turn.message]["content"] = phrasing
            new.append(conversation)
    return new


def _check_output_path(source: Path, out: Path) -> None:
    if out.suffix.lower() != ".jsonl":
        raise UserInputError(
            f"output {out}: the augmented dataset is written as OpenAI-messages JSONL; use a .jsonl file name"
        )
    if out.resolve() == source.resolve():
        raise UserInputError(
            f"output {out} is the source dataset; the original is never changed, pick another file name"
        )
    if not out.parent.is_dir():
        raise UserInputError(f"output {out}: folder {out.parent} does not exist")


def write_jsonl_atomically(conversations: Sequence[Conversation], out: Path) -> None:
    """Write to a temporary file in the same folder, then rename: a reader of `out` never sees a
    half-written file, and a crash leaves the previous file (if any) in place."""
    write_text_atomically(out, "".join(json.dumps({"messages": c}, ensure_ascii=False) + "\n" for c in conversations))


def augment_conversations(
    conversations: Sequence[Conversation],
    generator: Generator,
    per_turn: int = DEFAULT_PER_TURN,
    probe_questions: Sequence[str] = (),
    seed: int = DEFAULT_SEED,
    progress: Callable[[int, int], None] | None = None,
    report: AugmentReport | None = None,
) -> tuple[list[Conversation], AugmentReport]:
    """The originals, then one new conversation per kept phrasing, and the report (the trainer's
    `augment` key uses this; augment_dataset writes it to a file)."""
    report = report or AugmentReport(generator.name, "(conversations)", "")
    outcome = _run(conversations, generator, per_turn, probe_questions, seed, progress, report)
    return list(conversations) + _new_conversations(outcome, conversations), report


def augment_dataset(
    path: str | Path,
    out_path: str | Path,
    generator: Generator,
    per_turn: int = DEFAULT_PER_TURN,
    probe_questions: Sequence[str] = (),
    seed: int = DEFAULT_SEED,
    progress: Callable[[int, int], None] | None = None,
) -> AugmentReport:
    """Write `out_path`: the originals, then one new conversation per kept phrasing. The source is
    only read. When the generator fails midway the file holds what succeeded and the report's
    errors name the failed turns; when nothing succeeded, UserInputError and no file."""
    source, out = Path(path), Path(out_path)
    _check_output_path(source, out)
    dataset = load_dataset(source)
    augmented, report = augment_conversations(
        dataset.conversations,
        generator,
        per_turn,
        probe_questions,
        seed,
        progress,
        AugmentReport(generator.name, str(source), str(out)),
    )
    write_jsonl_atomically(augmented, out)
    return report


def preview(
    conversations: Sequence[Conversation],
    generator: Generator,
    per_turn: int = DEFAULT_PER_TURN,
    probe_questions: Sequence[str] = (),
    seed: int = DEFAULT_SEED,
    progress: Callable[[int, int], None] | None = None,
) -> AugmentPreview:
    """The phrasings augment_dataset would add, grouped by fact, without writing anything."""
    outcome = _run(
        conversations,
        generator,
        per_turn,
        probe_questions,
        seed,
        progress,
        AugmentReport(generator.name, "(conversations)", ""),
    )
    groups: dict[str, FactPhrasings] = {}
    for position, turn in enumerate(outcome.turns):
        conversation = conversations[turn.conversation]
        group = groups.setdefault(turn.fact, FactPhrasings(conversation[turn.message + 1]["content"], [], []))
        group.originals.append(conversation[turn.message]["content"])
        group.phrasings += outcome.phrasings.get(position, [])
    return AugmentPreview(list(groups.values()), outcome.report)


# ========================================================================================= CLI
def _spec_from_args(args: argparse.Namespace) -> dict[str, Any]:
    spec: dict[str, Any] = {"generator": args.generator, "per_turn": args.per_turn, "seed": args.seed}
    optional = {
        "families": args.families,
        "base_url": args.base_url,
        "model": args.model,
        "api_key_env": args.api_key_env,
    }
    spec.update({key: value for key, value in optional.items() if value is not None})
    return spec


def _print_progress(done: int, total: int) -> None:
    print(f"\raugmenting user turn {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m core.augment",
        description=(
            "Write an augmented copy of a chat dataset: more user phrasings per fact, balanced across "
            "facts, with copies, near-duplicates and probe-question leaks removed."
        ),
        epilog="exit status: 0 done, 1 done with some turns failed (see the errors), 2 bad input",
    )
    parser.add_argument("dataset", help="a .json or .jsonl dataset (alpaca, sharegpt or OpenAI messages)")
    parser.add_argument("--out", required=True, help="the augmented OpenAI-messages .jsonl to write")
    parser.add_argument("--generator", default="rules", choices=GENERATORS, help="(default: rules)")
    parser.add_argument(
        "--per-turn",
        type=int,
        default=DEFAULT_PER_TURN,
        help=f"most new phrasings per user turn (default: {DEFAULT_PER_TURN})",
    )
    parser.add_argument(
        "--families", help=f"rules generator: comma-separated, from {','.join(FAMILIES)} (default: all)"
    )
    parser.add_argument(
        "--probes",
        help='held-out questions, JSONL lines {"question": ..., "expect": ...}: phrasings close to them are removed',
    )
    parser.add_argument("--base-url", help="openai generator: the endpoint, e.g. http://127.0.0.1:11434/v1")
    parser.add_argument("--model", help="openai: the model name; local: a model folder, .gguf file or hub id")
    parser.add_argument(
        "--api-key-env",
        help=f"openai: environment variable holding the key "
        f"(default: {DEFAULT_API_KEY_ENV}; may be unset for local servers)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"(default: {DEFAULT_SEED})")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    args = parser.parse_args(argv)
    try:
        spec = _spec_from_args(args)
        generator = make_generator(spec)
        probes = []
        if args.probes:
            from core.probes import load_probes

            probes = [probe.question for probe in load_probes(args.probes)]
        report = augment_dataset(
            args.dataset,
            args.out,
            generator,
            spec["per_turn"],
            probes,
            spec["seed"],
            progress=_print_progress if sys.stderr.isatty() else None,
        )
    except UserInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), ensure_ascii=False) if args.json else report.summary())
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
