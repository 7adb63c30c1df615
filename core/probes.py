"""Fact probes: does the tuned bot answer the right fact to phrasings it never saw?

A probe is a question and the strings its answer must contain (all of them). Probes come from a
JSONL file (`{"question": str, "expect": str | [str, ...], "fact"?: str}` per line) or from the
training data itself (`auto_probes`: a few phrasings of each answer are held out of training).

    python -m core.probes RUN [--probes FILE] [--json] [--base]

Matching rule (`normalise` is applied to the answer and to every expected string, then each
expected string must occur in the answer):
- Unicode NFKC (full-width digits and letters become ASCII), case-folded, curly quotes made
  straight, whitespace collapsed to single spaces.
- Thousands separators dropped: "1,000" == "1000".
- Amounts: "$79" == "$ 79" == "79 dollars" == "79 USD" == "79美元" (likewise € and £), and a
  trailing ".00" is ignored: "$79.00" == "$79".
- Percentages: "10 %" == "10 percent" == "10%".
- Times: "8 am" == "8am" == "8:00 am" == "8 a.m."; Chinese "上午9点" == "9am", "下午1点" == "1pm".
- Ranges: "3 to 5" == "3-5" == "3–5" == "3到5".
- Units after a number: "30-day" == "30 days", "24 hrs" == "24 hours", "5 kg" == "5kg".
- Number boundaries: an expected string that starts or ends with a digit matches only where the
  answer's number starts or ends there too: "9" matches "9 am" and "$9" but not "19" or "9.5".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# No torch here at import time: `python -m core.probes` reports a bad run folder in a moment.
from core.config import AUTO, load_config
from core.data import Conversation
from core.errors import UserInputError
from core.events import RunFolder
from core.paths import resolve_dataset, write_text_atomically
from core.template import ChatEncoder

PROBE_KEYS = ("question", "expect", "fact")
MAX_PARTS = 3  # expected strings per auto probe: all are required, so more make a probe stricter
RUN_PROBES_FILE = "probes.jsonl"  # where the trainer writes a run's auto probes


# ------------------------------------------------------------------------------------ probes
@dataclass
class Probe:
    question: str
    expect: list[str]  # every string must be in the answer (after `normalise`)
    fact: str = ""  # groups the probes of one fact in reports; auto probes use the reference answer


def _probe_problems(record: Any, where: str) -> list[str]:
    """Every problem with one JSONL record, each naming its line and field."""
    if not isinstance(record, dict):
        return [f'{where}: expected a JSON object like {{"question": ..., "expect": ...}}, got {type(record).__name__}']
    problems = []
    unknown = [key for key in record if key not in PROBE_KEYS]
    if unknown:
        problems.append(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed keys: {', '.join(PROBE_KEYS)}"
        )
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        problems.append(f"{where}: field 'question' is missing or not a non-empty string")
    expect = record.get("expect")
    if isinstance(expect, str):
        expect = [expect]
    if not (isinstance(expect, list) and expect and all(isinstance(e, str) and e.strip() for e in expect)):
        got = "missing" if "expect" not in record else f"got {json.dumps(record['expect'], ensure_ascii=False)[:80]}"
        problems.append(f"{where}: field 'expect' must be a non-empty string or a list of non-empty strings ({got})")
    if not isinstance(record.get("fact", ""), str):
        problems.append(f"{where}: field 'fact' must be a string, got {type(record['fact']).__name__}")
    return problems


def load_probes(path: str | Path) -> list[Probe]:
    """Read a probes JSONL file; raise UserInputError listing every bad line at once."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"Probes file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserInputError(f"{path}: not UTF-8 text; save it as UTF-8") from None
    probes, problems = [], []
    # split("\n"), not splitlines(): a JSON string may hold a raw U+2028 (see core.data)
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            problems.append(f"{where}: not valid JSON ({err.msg} at column {err.colno})")
            continue
        found = _probe_problems(record, where)
        problems += found
        if not found:
            expect = record["expect"]
            probes.append(
                Probe(record["question"], [expect] if isinstance(expect, str) else list(expect), record.get("fact", ""))
            )
    if problems:
        raise UserInputError(f"{path}: {len(problems)} problem(s) in the probes file:", problems)
    if not probes:
        raise UserInputError(f'{path} holds no probes (one JSON object per line: {{"question": ..., "expect": ...}})')
    return probes


def save_probes(probes: list[Probe], path: str | Path) -> None:
    """Write probes as JSONL, atomically: a reader never sees half a file."""
    path = Path(path)
    lines = []
    for probe in probes:
        record = {"question": probe.question, "expect": probe.expect}
        if probe.fact:
            record["fact"] = probe.fact
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, "".join(lines))


# ---------------------------------------------------------------------------------- matching
_NUM = r"\d+(?:\.\d+)?"
_NOT_LETTER_AFTER = r"(?![a-z])"  # not \b: in Chinese text "9am到" has no \b (CJK chars are \w)
# currency symbol -> (words written after an amount, codes written before it)
_CURRENCIES = {
    "$": (("dollars", "dollar", "usd", "bucks", "美元", "美金"), ("usd", r"us\$")),
    "€": (("euros", "euro", "eur"), ("eur",)),
    "£": (("gbp",), ("gbp",)),
}
# canonical unit -> the ways it is written after a number (lowercase; longest alternatives first)
_UNITS = {
    "day": ("days", "day"),
    "hour": ("hours", "hour", "hrs", "hr", "h"),
    "minute": ("minutes", "minute", "mins", "min"),
    "second": ("seconds", "second", "secs", "sec"),
    "week": ("weeks", "week"),
    "month": ("months", "month"),
    "year": ("years", "year", "yrs", "yr"),
    "litre": ("litres", "litre", "liters", "liter", "l"),
    "ml": ("ml",),
    "kg": ("kg", "kgs"),
    "g": ("grams", "gram", "g"),
    "cm": ("cm",),
    "mm": ("mm",),
    "km": ("km",),
    "°c": ("°c",),
}
_UNIT_WRITINGS = {writing: unit for unit, writings in _UNITS.items() for writing in writings}
_UNIT_RE = re.compile(
    rf"({_NUM})\s?-?\s?((?:business |working )?)"
    rf"({'|'.join(sorted(map(re.escape, _UNIT_WRITINGS), key=len, reverse=True))}){_NOT_LETTER_AFTER}"
)
_ZH_TIME_RE = re.compile(r"(上午|早上|早晨|中午|下午|晚上|傍晚)(\d{1,2})点(半|(\d{1,2})分)?")
_ZH_PM = ("中午", "下午", "晚上", "傍晚")


def _zh_time(match: re.Match) -> str:
    """上午9点 -> 9am, 下午1点半 -> 1:30pm (a period word is needed: a bare 9点 stays as it is)."""
    period, hour, half, minutes = match.groups()
    suffix = "pm" if period in _ZH_PM else "am"
    if half:
        return f"{hour}:{'30' if half == '半' else minutes.zfill(2)}{suffix}"
    return f"{hour}{suffix}"


def _canonical_amounts(text: str) -> str:
    for symbol, (words, codes) in _CURRENCIES.items():
        text = re.sub(rf"({_NUM})\s?(?:{'|'.join(words)}){_NOT_LETTER_AFTER}", rf"{symbol}\1", text)
        text = re.sub(rf"(?<![a-z])(?:{'|'.join(codes)})\s?(?=\d)", symbol, text)
        text = re.sub(rf"{re.escape(symbol)}\s(?=\d)", symbol, text)
        text = re.sub(rf"({re.escape(symbol)}\d+)\.00(?!\d)", r"\1", text)
    return text


def _canonical_times(text: str) -> str:
    text = re.sub(r"(\d)\s?([ap])(?:m|\.\s?m\.)" + _NOT_LETTER_AFTER, r"\1\2m", text)  # 8 a.m. -> 8am
    text = re.sub(r"(\d{1,2})[:.]00([ap]m)", r"\1\2", text)  # 8:00am -> 8am
    return _ZH_TIME_RE.sub(_zh_time, text)


def _canonical_units(match: re.Match) -> str:
    number, qualifier, unit = match.groups()
    return f"{number} {qualifier}{_UNIT_WRITINGS[unit]}"


def normalise(text: str) -> str:
    """The canonical form both sides of a match are compared in (rules: module docstring)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = text.translate(str.maketrans("‘’“”", "''\"\""))
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"(\d),(?=\d{3}(?!\d))", r"\1", text)  # 1,000,000 -> 1000000
    text = _canonical_amounts(text)
    text = re.sub(r"(\d)\s?(?:%|percent|per cent)" + _NOT_LETTER_AFTER, r"\1%", text)
    text = _canonical_times(text)
    text = re.sub(r"(\d)\s?(?:-|–|—|~|to|到|至)\s?(?=\d)", r"\1-", text)  # ranges: 3 to 5 -> 3-5
    return _UNIT_RE.sub(_canonical_units, text)


def _occurs(needle: str, haystack: str) -> bool:
    """`needle` in `haystack` (both normalised), respecting number boundaries at its ends."""
    if not needle:
        return False
    before = r"(?<!\d)(?<!\d\.)" if needle[0].isdigit() else ""
    after = r"(?!\d)(?!\.\d)" if needle[-1].isdigit() else ""
    return re.search(before + re.escape(needle) + after, haystack) is not None


def matches(answer: str, expect: list[str]) -> bool:
    """True when every expected string occurs in the answer; an empty `expect` proves nothing."""
    text = normalise(answer)
    return bool(expect) and all(_occurs(normalise(e), text) for e in expect)


# ------------------------------------------------------------------------ distinctive parts
# Patterns for the kinds of parts, most specific first. ASCII lookarounds, not \b: in Chinese text
# a Latin word touches CJK characters, which are \w too ("拨打1-800-555-0142联系").
_AMOUNT_NUM = r"\d+(?:,\d{3})*(?:\.\d+)?"
_RANGE = rf"{_NUM}(?:\s?(?:-|–|to|到|至)\s?{_NUM})?"
_PART_KINDS: list[tuple[str, re.Pattern]] = [
    (
        "email",
        re.compile(
            r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
            r"\.[A-Za-z]{2,}(?![A-Za-z0-9-])"
        ),
    ),
    (
        "url",
        re.compile(
            r"(?<![A-Za-z0-9@./-])(?:https?://)?(?:[A-Za-z0-9-]+\.)+"
            r"(?:com|org|net|io|co|uk|us|ca|de|fr|eu|cn|au|info|biz|app|dev|shop|store)"
            r"(?![A-Za-z0-9-])(?:/[A-Za-z0-9_\-./?=&%#~+]*[A-Za-z0-9_\-/=&%#~+])?"
        ),
    ),
    (
        "phone",
        re.compile(
            r"(?<![A-Za-z0-9+-])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)\s?|\d{1,4}[-.\s])"
            r"(?:\d{2,4}[-.\s]){0,3}\d{3,4}(?![0-9-])"
        ),
    ),
    ("code", re.compile(r"(?<![A-Za-z0-9_-])(?:[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)*|#\d{3,})(?![A-Za-z0-9_-])")),
    (
        "amount",
        re.compile(
            rf"(?:US\$|[$€£])\s?{_AMOUNT_NUM}|{_AMOUNT_NUM}\s?(?:dollars?|USD|euros?|EUR|GBP|美元|美金)"
            rf"(?![A-Za-z])|(?<![A-Za-z])(?:USD|EUR|GBP)\s?{_AMOUNT_NUM}",
            re.IGNORECASE,
        ),
    ),
    ("percent", re.compile(rf"{_NUM}\s?(?:%|percent|per cent)(?![A-Za-z])", re.IGNORECASE)),
    (
        "time",
        re.compile(
            r"(?<![0-9:.])\d{1,2}(?:[:.]\d{2})?\s?(?:[ap]m|[ap]\.m\.)(?![A-Za-z])|"
            r"(?<![0-9:.])\d{1,2}:\d{2}(?![0-9:])|"
            r"(?:上午|早上|早晨|中午|下午|晚上|傍晚)?\d{1,2}点(?:半|\d{1,2}分)?",
            re.IGNORECASE,
        ),
    ),
    (
        "quantity",
        re.compile(
            rf"(?<![0-9.]){_RANGE}(?:\s?-?\s?(?:business |working )?"
            rf"(?:{'|'.join(sorted(map(re.escape, _UNIT_WRITINGS), key=len, reverse=True))})(?![A-Za-z])"
            rf"|个?(?:工作日|小时|分钟|星期|个月|天|周|年|公斤|千克|克|毫升|升|厘米|公里))",
            re.IGNORECASE,
        ),
    ),
    ("number", re.compile(r"(?<![0-9.])\d+(?:[.,]\d+)*(?![0-9])")),
]
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:['’-][A-Za-z0-9]+)*")
_QUOTED_RE = re.compile(r"(?<![A-Za-z0-9])['\"“‘「『]([^'\"”’」』\n]{1,40}?)['\"”’」』](?![A-Za-z0-9])")
_CJK_RUN_RE = re.compile(r"[\u4e00-\u9fff]+")
_SENTENCE_END = ".!?。！？\n"
_OPENERS = "'\"“‘「『([（"
# Function words and chat fillers: not names even when capitalised, not content words.
COMMON_WORDS = frozenset(
    """
a an the this that these those there here it its i i'm i'll i've i'd me my mine we we're we'll
our ours you you're you'll your yours he she they them their his her what which who whom whose
how when where why if then so and or but nor not no yes of to in on at for with from by as into
about over after before under up out off is are was were be been being am do does did have has
had can could will would shall should may might must just also only all any every each some
many much more most other another such very too please thanks thank sorry hi hello hey dear ok
okay sure well oh course right now today anything something everything nothing ai
""".split()
)


def _overlaps(span: tuple[int, int], taken: list[tuple[int, int]]) -> bool:
    return any(span[0] < end and start < span[1] for start, end in taken)


def _at_sentence_start(text: str, start: int) -> bool:
    before = text[:start].rstrip(" ")
    return not before or before[-1] in _SENTENCE_END or before[-1] in _OPENERS


def _name_runs(text: str) -> list[tuple[int, int]]:
    """Spans of runs of capitalised words ("Bloom Points"), common words trimmed off their ends.

    The first word of a Latin sentence may be capitalised only for that reason: it is dropped.
    Next to Chinese text capitals mean a name wherever they are ("Pebble是我们的...").
    """
    words = []
    for match in _WORD_RE.finditer(text):
        end = match.end() - 2 if re.search(r"['’]s$", match.group()) else match.end()  # Kettlebloom's
        words.append((match.start(), end, match.group()[: end - match.start()]))
    runs, run = [], []
    for word in words + [(len(text) + 2, 0, "")]:  # a sentinel ends the last run
        capitalised = word[2][:1].isupper() or any(c.isupper() for c in word[2][1:])
        if run and (not capitalised or text[run[-1][1] : word[0]] != " "):
            runs.append(run)
            run = []
        if capitalised:
            run.append(word)
    spans = []
    for run in runs:
        while run and run[0][2].lower() in COMMON_WORDS:
            run = run[1:]
        while run and run[-1][2].lower() in COMMON_WORDS:
            run = run[:-1]
        if not run:
            continue
        latin_sentence = run[0][1] >= len(text) or not _CJK_RUN_RE.match(text[run[0][1]])
        if latin_sentence and _at_sentence_start(text, run[0][0]):
            run = run[1:]  # "Ask Tilly" -> "Tilly" (and "Bloom Points are..." -> "Points": lenient)
        if run:
            spans.append((run[0][0], run[-1][1]))
    return spans


def _longest_content_word(text: str) -> list[str]:
    """Fallback when nothing distinctive was found: the longest word that is not a function word
    (a run of Chinese characters counts as one word: there are no spaces to split it on)."""
    words = [w for w in _WORD_RE.findall(text) if w.lower() not in COMMON_WORDS] + _CJK_RUN_RE.findall(text)
    return [max(words, key=len)] if words else []


def _plausible(kind: str, found: str) -> bool:
    """Checks a pattern cannot express simply."""
    if kind == "phone":
        return sum(c.isdigit() for c in found) >= 7  # "100 200" is not a phone number
    if kind == "code":  # 2+ capitals with digits (WELCOME10, KB-2291), or #12345; not "US" or "A4"
        return any(c.isdigit() for c in found) and sum(c.isalpha() for c in found) != 1
    return True


def _candidate_spans(text: str) -> list[tuple[int, int]]:
    """Spans of every distinctive part in priority order; a span inside a better one is skipped."""
    taken: list[tuple[int, int]] = []
    for kind, pattern in _PART_KINDS:
        for match in pattern.finditer(text):
            if _plausible(kind, match.group()) and not _overlaps(match.span(), taken):
                taken.append(match.span())
    for span in _name_runs(text) + [m.span(1) for m in _QUOTED_RE.finditer(text)]:
        if not _overlaps(span, taken):
            taken.append(span)
    return taken


def distinctive_parts(answer: str) -> list[str]:
    """The strings a correct answer should contain: emails, URLs, phone numbers, codes, amounts,
    percentages, times, quantities, numbers, then names and quoted terms; at most MAX_PARTS, the
    most specific first, none implied by an earlier one."""
    text = unicodedata.normalize("NFKC", answer)
    parts: list[str] = []
    for start, end in _candidate_spans(text):
        part = text[start:end].strip()
        key = normalise(part)
        if key and not any(_occurs(key, normalise(p)) for p in parts):
            parts.append(part)
    return parts[:MAX_PARTS] or _longest_content_word(text)


# ------------------------------------------------------------------------------ auto probes
def _single_exchange(conversation: Conversation) -> tuple[str, str] | None:
    """(user, assistant) of a one-question conversation (a system turn first is allowed)."""
    turns = conversation[1:] if conversation and conversation[0]["role"] == "system" else conversation
    if [m["role"] for m in turns] == ["user", "assistant"]:
        return turns[0]["content"], turns[1]["content"]
    return None


def _held_out(answer_key: str, phrasings: list[str], seed: int, share: float) -> list[str]:
    """Which normalised phrasings of one answer to hold out. The generator is seeded from the seed
    and the answer, so adding or reordering other answers' conversations changes nothing here."""
    count = min(len(phrasings) - 1, max(1, round(share * len(phrasings))))  # keep one to train on
    digest = hashlib.sha256(answer_key.encode("utf-8")).hexdigest()
    return random.Random(f"{seed}:{digest}").sample(sorted(phrasings), count)


def auto_probes(
    conversations: list[Conversation], seed: int = 42, share: float = 0.2, min_phrasings: int = 3
) -> tuple[list[Conversation], list[Probe]]:
    """Hold out some phrasings of each answer as probes; return (training conversations, probes).

    Single-exchange conversations are grouped by their normalised answer; a group with at least
    `min_phrasings` distinct (normalised) questions gives round(share x n) probes, at least 1 and
    at most n - 1. Every conversation with a user turn equal to a probe question leaves the
    training list, multi-turn ones too, so the model never sees a probe phrasing.
    """
    if not 0 < share < 1:
        raise UserInputError(f"Probe share must be between 0 and 1 (exclusive), got {share}")
    if min_phrasings < 2:
        raise UserInputError(f"min_phrasings must be >= 2 (one phrasing stays in training), got {min_phrasings}")
    groups: dict[str, tuple[str, dict[str, str]]] = {}  # answer key -> (answer, {phrasing key: question})
    for conversation in conversations:
        exchange = _single_exchange(conversation)
        if exchange is not None:
            question, answer = exchange
            phrasings = groups.setdefault(normalise(answer), (answer, {}))[1]
            phrasings.setdefault(normalise(question), question)
    probes, held = [], set()
    for answer_key, (answer, phrasings) in groups.items():
        expect = distinctive_parts(answer)
        if len(phrasings) < min_phrasings or not expect:
            continue
        for key in _held_out(answer_key, list(phrasings), seed, share):
            probes.append(Probe(phrasings[key], list(expect), answer))
            held.add(key)
    training = [c for c in conversations if not any(m["role"] == "user" and normalise(m["content"]) in held for m in c)]
    return training, probes


# -------------------------------------------------------------------------------- scoring
def greedy_answers(
    model, tokenizer, encoder, questions: list[str], max_new_tokens: int = 64, batch_size: int = 16
) -> list[str]:
    """Greedy replies to single-turn questions, in batches; one string per question.

    Left padding, so every prompt in a batch ends where generation starts; the tokenizer's own
    padding side is restored afterwards (training pads on the right).
    """
    import torch

    saved_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    answers: list[str] = []
    try:
        for start in range(0, len(questions), batch_size):
            prompts = [
                encoder.prompt_for_reply([{"role": "user", "content": q}])
                for q in questions[start : start + batch_size]
            ]
            batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            with torch.inference_mode():
                out = model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
            # out: [batch, prompt + new]; the prompt part is the same width for every row
            answers += tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = saved_side
    return [answer.strip() for answer in answers]


@dataclass
class ProbeReport:
    recall: float  # share of probes answered with every expected string
    hits: list[bool]
    answers: list[str]
    probes: list[Probe]
    elapsed_s: float = 0.0

    def fact_recall(self) -> dict[str, float]:
        """Recall per fact, in the order the facts first appear."""
        groups: dict[str, list[bool]] = {}
        for probe, hit in zip(self.probes, self.hits):
            # a probe without a fact label is grouped with those expecting the same strings
            groups.setdefault(probe.fact or " + ".join(probe.expect), []).append(hit)
        return {fact: sum(hits) / len(hits) for fact, hits in groups.items()}

    def misses(self) -> list[tuple[Probe, str]]:
        return [(p, a) for p, a, hit in zip(self.probes, self.answers, self.hits) if not hit]

    def to_event(self) -> dict[str, Any]:
        """The JSON-able summary a run's events.jsonl or `--json` carries."""
        return {
            "recall": round(self.recall, 4),
            "n": len(self.probes),
            "hits": sum(self.hits),
            "probe_hits": [int(h) for h in self.hits],
            "per_fact": {fact: round(r, 4) for fact, r in self.fact_recall().items()},
            "elapsed_s": round(self.elapsed_s, 2),
        }


def report_from_answers(probes: list[Probe], answers: list[str], elapsed_s: float = 0.0) -> ProbeReport:
    """Score given answers (pure: no model)."""
    hits = [matches(answer, probe.expect) for probe, answer in zip(probes, answers, strict=True)]
    return ProbeReport(sum(hits) / len(hits) if hits else 0.0, hits, list(answers), list(probes), elapsed_s)


def score_probes(model, tokenizer, encoder, probes: list[Probe], **gen: Any) -> ProbeReport:
    """Ask every probe question greedily (`gen`: greedy_answers' options) and score the answers."""
    started = time.monotonic()
    answers = greedy_answers(model, tokenizer, encoder, [p.question for p in probes], **gen)
    return report_from_answers(probes, answers, time.monotonic() - started)


def probes_for_run(probes: str, conversations: list[Conversation], seed: int) -> tuple[list[Conversation], list[Probe]]:
    """The conversations a run trains on and the probes it is scored with, from its `probes` value:
    'none', 'auto' (held out of the training conversations) or a probe file (training unchanged)."""
    if probes == "none":
        return conversations, []
    if probes == AUTO:
        return auto_probes(conversations, seed=seed)
    return conversations, load_probes(resolve_dataset(probes))


# ------------------------------------------------------------------------------- run folders
def _run_probes(run_dir: Path, probes_path: str | Path | None) -> list[Probe]:
    if probes_path is not None:
        return load_probes(probes_path)
    default = run_dir / RUN_PROBES_FILE
    if not default.is_file():
        raise UserInputError(
            f"{default} not found: this run has no auto probes. Pass --probes FILE "
            f'(JSONL, one {{"question": ..., "expect": ...}} per line).'
        )
    return load_probes(default)


def score_run(run_dir: str | Path, probes_path: str | Path | None = None, base: bool = False) -> dict[str, ProbeReport]:
    """Probe a run's adapter: {"tuned": report} and, with `base`, {"base": report} of the base model."""
    run = RunFolder(run_dir)
    if not run.config.is_file():
        raise UserInputError(f"{run.path} is not a run folder: it has no config.yaml")
    if not (run.adapter / "adapter_config.json").is_file():
        raise UserInputError(
            f"Run {run.path.name} has no adapter yet: it saves one when it finishes or is stopped after its first step."
        )
    probes = _run_probes(run.path, probes_path)
    config = load_config(run.config)
    model, tokenizer = _tuned_model(config, run.adapter)
    encoder = ChatEncoder(tokenizer, config.system_prompt)
    reports = {"tuned": score_probes(model, tokenizer, encoder, probes)}
    if base:
        with model.disable_adapter():
            reports["base"] = score_probes(model, tokenizer, encoder, probes)
    return reports


def _tuned_model(config, adapter: Path):
    """Base model (quantized as it was trained) + the run's adapter, on cuda if there is one."""
    import torch
    from peft import PeftModel

    from core.models import load_model, load_tokenizer, resolve_model

    source = resolve_model(config.model_name_or_path)
    tokenizer = load_tokenizer(source)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(source, config.quantization_bit, device=device)
    return PeftModel.from_pretrained(model, str(adapter)).eval(), tokenizer


def _cut(text: str, width: int) -> str:
    """One table cell: control characters (a broken model emits them) must not reach the terminal."""
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_report(name: str, report: ProbeReport) -> None:
    print(
        f"{name:5} recall {report.recall:6.1%}  ({sum(report.hits)}/{len(report.hits)} probes, "
        f"{report.elapsed_s:.1f} s)"
    )


def _print_misses(report: ProbeReport) -> None:
    misses = report.misses()
    print(f"\nmissed by the tuned model ({len(misses)}):")
    if misses:
        print(f"  {'question':40} {'expected':28} {'answer':50} fact")
    for probe, answer in misses:
        print(
            f"  {_cut(probe.question, 40):40} {_cut(' + '.join(probe.expect), 28):28} "
            f"{_cut(answer, 50):50} {_cut(probe.fact, 40)}"
        )


def _json_report(report: ProbeReport) -> dict[str, Any]:
    return {
        **report.to_event(),
        "misses": [
            {"question": p.question, "expect": p.expect, "answer": a, "fact": p.fact} for p, a in report.misses()
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m core.probes", description="Ask a run's fact probes to its tuned model and print the recall."
    )
    parser.add_argument("run", help="the run folder (has config.yaml and adapter/)")
    parser.add_argument("--probes", metavar="FILE", help=f"probes JSONL file (default: RUN/{RUN_PROBES_FILE})")
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    parser.add_argument("--base", action="store_true", help="also score the base model without the adapter")
    args = parser.parse_args(argv)
    try:
        reports = score_run(args.run, args.probes, base=args.base)
    except UserInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({name: _json_report(r) for name, r in reports.items()}, ensure_ascii=False, indent=2))
        return 0
    for name, report in reports.items():
        _print_report(name, report)
    _print_misses(reports["tuned"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
