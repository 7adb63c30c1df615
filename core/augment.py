"""Paraphrase augmentation: more user phrasings per fact for a FAQ fine-tune.

A support bot must give a fact however the customer asks for it, and one phrasing per fact teaches
the words rather than the fact (DESIGN: varied phrasings beat more epochs). For every user turn
this writes new conversations in which that turn is said differently; the assistant turns (and
the system prompt) stay as they are.

Generators write the phrasings:
  rules   offline and deterministic, English and Chinese: greetings/closings, indirect questions,
          reordering, a customer-service synonym lexicon, casing, punctuation and typo noise.
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
import random
import re
import sys
import tempfile
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from datasketch import MinHash, MinHashLSH

from core.config import TrainConfig
from core.data import Conversation, Message, load_dataset
from core.errors import UserInputError

if TYPE_CHECKING:  # imported when used: the rules generator and the CLI's --help never need it
    import openai

GENERATORS = ("rules", "openai", "local")
FAMILIES = ("wrap", "indirect", "reorder", "synonym", "casing", "punct", "typo")
# Families that change the wording; the others only add surface noise, which alone leaves a
# near-copy of the source that the filters drop, so noise rides on a wording change when one is on.
WORDING_FAMILIES = ("wrap", "indirect", "reorder", "synonym")
DEFAULT_PER_TURN = 8
MAX_PER_TURN = 64
DEFAULT_SEED = 42
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
# Local servers (Ollama, vLLM, llama.cpp, LM Studio) ignore the key, but the client requires one.
PLACEHOLDER_API_KEY = "not-needed"
ASK_FACTOR = 2  # ask for twice the quota: the filters typically drop a share of what comes back
ATTEMPTS_PER_PHRASING = 40  # rules: random family combinations tried per phrasing wanted
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


# ------------------------------------------------------------------------------- language, facts
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
PRIVATE_USE = re.compile(r"[\ue000-\uf8ff]")  # a masked fact is one private-use character
NAME_BASE, OTHER_BASE = 0xE000, 0xE800  # names get their own range: a rule may swap two names

_A = r"A-Za-z0-9"  # ASCII edges: Chinese characters are \w in Python, so \b fails in "Pebble厨房"
_FACT = re.compile(
    "|".join(
        (
            rf"(?P<email>[{_A}._%+-]+@[{_A}-]+(?:\.[{_A}-]+)+)",
            rf"(?P<url>https?://[{_A}./?=&%#_~:-]+|(?<![{_A}.@-])[a-z0-9-]+(?:\.[a-z0-9-]+)*"
            rf"\.(?:com|net|org|io|co|cn|de|uk|eu|shop|app)(?![{_A}])(?:/[{_A}./?=&%#_-]*)?)",
            rf"(?P<code>#[{_A}-]+|(?<![{_A}.])(?=[{_A}-]*[0-9])(?=[{_A}-]*[A-Z])[{_A}]+(?:-[{_A}]+)*(?![{_A}])"
            rf"|(?<![{_A}])[A-Z]{{2,}}(?![{_A}]))",
            rf"(?P<number>[$€£¥]?(?<![{_A}.])\d+(?:[.,:]\d+)*%?|[一二两三四五六七八九十百千万]+(?=[天个年月日号点元块分秒周次件台]))",
            rf"(?P<name>(?<![{_A}'’])(?:[A-Z][a-z][A-Za-z]*|[a-z]+[A-Z][A-Za-z]*|[A-Z])(?![{_A}]))",
        )
    )
)
# A capitalised word that starts a sentence is a name unless it is one of these; an unknown word is
# kept as written (never lowercased or typo'd), the safe side for a product name like "Aurora".
SENTENCE_STARTERS = frozenset(
    """
a about after also am an and any anyone anything are as at be before book but buy by call can cancel
change check could dear did do does email find for from get give good great greetings have has hello
help hey hi how i if in is it just let may maybe me might morning my need no not now of ok okay on one or
order our please quick reset return send ship should show so sorry still tell thank thanks that the
their there these they this those to today tomorrow track update want was we well were what whats
when where which who why will with would write yes yesterday you your
""".split()
)


def detect_lang(text: str) -> str:
    """'zh' when the text holds CJK characters, else 'en'."""
    return "zh" if CJK.search(text) else "en"


@dataclass(frozen=True)
class Fact:
    kind: str  # email | url | code | number | name
    text: str
    required: bool  # a sentence-initial unknown word is protected from edits but not required


def _at_sentence_start(text: str, start: int) -> bool:
    return re.search(r"(?:^|[.!?。！？:：\n])\s*[\"'“‘(]?$", text[:start]) is not None


def find_facts(text: str) -> list[tuple[int, int, Fact]]:
    """(start, end, fact) for every fact a phrasing must keep: emails, URLs, codes, numbers, names."""
    found = []
    for match in _FACT.finditer(text):
        kind, value = match.lastgroup, match.group()
        if kind == "name" and value == "I":
            continue  # the pronoun
        required = True
        if kind == "name" and _at_sentence_start(text, match.start()):
            if value.lower() in SENTENCE_STARTERS:
                continue
            required = False  # "Kettle price?": could be a product name, or just a capital letter
        found.append((match.start(), match.end(), Fact(kind, value, required)))
    return found


def missing_facts(source: str, phrasing: str) -> list[str]:
    """The source's facts that `phrasing` lost. Numbers ignore a currency sign ("79 dollars" keeps
    "$79"), names ignore case; emails, URLs and codes must be exact."""
    missing = []
    for _, _, fact in find_facts(source):
        if not fact.required:
            continue
        if fact.kind == "number":
            digits = fact.text.lstrip("$€£¥")
            kept = re.search(rf"(?<![0-9]){re.escape(digits)}(?![0-9])", phrasing) is not None
        elif fact.kind == "name":
            kept = re.search(rf"(?<![A-Za-z]){re.escape(fact.text)}(?![a-z])", phrasing, re.I) is not None
        else:
            kept = fact.text in phrasing
        if not kept:
            missing.append(fact.text)
    return missing


@dataclass(frozen=True)
class Masked:
    """Text with each fact replaced by one private-use character, which no rule can edit."""

    text: str
    facts: tuple[Fact, ...]

    def unmask(self, text: str) -> str:
        def fact(match: re.Match) -> str:
            code = ord(match.group())
            return self.facts[code - (NAME_BASE if code < OTHER_BASE else OTHER_BASE)].text

        return PRIVATE_USE.sub(fact, text)


def mask(text: str) -> Masked:
    text = PRIVATE_USE.sub("", text)  # private-use characters carry no meaning in a customer message
    pieces, facts, at = [], [], 0
    for start, end, fact in find_facts(text):
        pieces += [text[at:start], chr((NAME_BASE if fact.kind == "name" else OTHER_BASE) + len(facts))]
        facts.append(fact)
        at = end
    pieces.append(text[at:])
    return Masked("".join(pieces), tuple(facts))


# ------------------------------------------------------------------------------ text helpers
_END = re.compile(r"[\s?？!！.。~～]*$")
_WORD = r"[A-Za-z'’\ue000-\uf8ff-]+"  # a word, or a masked fact


def split_end(text: str) -> tuple[str, str]:
    """('What are your hours', '?'): the body and its final punctuation."""
    end = _END.search(text).group()
    return text[: len(text) - len(end)], end.strip()


def lower_first(text: str) -> str:
    if re.match(r"I(?![A-Za-z])", text):  # "I" stays a capital
        return text
    return text[:1].lower() + text[1:]


def upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"\s+([,.!?])", r"\1", text)


def _around_question(text: str) -> tuple[str, str, str] | None:
    """(before, sentence, after): the last question in the text (else its last sentence), which is
    the one the indirect rules reshape; greetings ("Hi!", "你好，在吗？") are never it."""
    parts = re.split(r"(?<=[.!?。！？：])\s*(?=\S)|(?<=:)\s+", text.strip())
    content = [i for i, p in enumerate(parts) if not HAS_GREETING.match(p)]
    if not content:
        return None
    at = max((i for i in content if split_end(parts[i])[1][:1] in ("?", "？")), default=content[-1])
    space = "" if CJK.search(text) else " "
    before = "".join(p + space for p in parts[:at])
    after = "".join(space + p for p in parts[at + 1 :])
    return before, parts[at], after


# ------------------------------------------------------------------------------ family: wrap
GREETINGS = {
    "en": ("Hi, ", "Hello, ", "Hey, ", "Hi there, ", "Good morning, "),
    "zh": ("你好，", "您好，", "在吗？", "哈喽，", "打扰一下，"),
}
CLOSINGS = {
    "en": ("Thanks!", "Thank you.", "Thanks in advance!", "Cheers!"),
    "zh": ("谢谢", "谢谢！", "麻烦了", "多谢！"),
}
HAS_GREETING = re.compile(r"(?i)^(?:hi|hello|hey|good (?:morning|afternoon|evening)|dear|你好|您好|在吗|哈喽)")
GREETING_WORDS = {"en": ("Hi", "Hello", "Hey", "Good morning"), "zh": ("你好", "您好", "哈喽")}
HAS_CLOSING = re.compile(r"(?i)(?:thanks|thank you|cheers|thx|谢谢|多谢|麻烦了)\W*$")
_ONLY_PUNCT = r"[\s!?.,~！？。，～]*$"  # not \W: that would also match a masked name ("Hi Tilly!")
ONLY_GREETING = re.compile(
    rf"(?i)^(?:hi|hello|hey|good (?:morning|afternoon|evening))(?: there)?{_ONLY_PUNCT}"
    rf"|^(?:你好|您好|在吗|哈喽){_ONLY_PUNCT}"
)
GREETING_TURNS = {
    "en": ("Hi!", "Hello!", "Hey there!", "Good morning!", "Hi, anyone there?"),
    "zh": ("你好！", "您好！", "在吗？", "哈喽！", "有人吗？"),
}


def _with_closing(text: str, closing: str, lang: str) -> str:
    if split_end(text)[1]:
        return f"{text} {closing}" if lang == "en" else text + closing
    return f"{text}, {lower_first(closing)}" if lang == "en" else f"{text}，{closing}"


def wrap(text: str, lang: str) -> list[str]:
    """Greetings in front, thanks at the end, or both; a bare greeting becomes another greeting."""
    if ONLY_GREETING.match(text):
        return [g for g in GREETING_TURNS[lang] if normalise(g) != normalise(text)]
    greeting = HAS_GREETING.match(text)
    if greeting:  # "Hello Tilly!" -> "Hi Tilly!"
        greeted = [
            word + text[greeting.end() :] for word in GREETING_WORDS[lang] if word.lower() != greeting.group().lower()
        ]
    else:
        greeted = [g + (lower_first(text) if lang == "en" else text) for g in GREETINGS[lang]]
    if HAS_CLOSING.search(text):
        return greeted
    closed = [_with_closing(t, c, lang) for t in [text, *greeted] for c in CLOSINGS[lang]]
    return greeted + closed


# -------------------------------------------------------------------------- family: indirect
WH = r"what time|what|when|where|which|who|why|how (?:much|many|long|often|soon|far)|how"
DETERMINERS = frozenset("the your my our a an this that these those its their any".split())
PRONOUNS = frozenset("i you we they he she it there".split())
PREPOSITIONS = frozenset("on in at for during from to with by after before within over under about".split())
MODALS = frozenset("can could will would should shall may might".split())
# Base-form verbs a support question uses after "does"/"can" + subject: they mark where a subject of
# more than one word ends ("When does the Ember kettle ship?").
VERBS = frozenset(
    """
accept apply arrive be book buy call cancel change charge check clean close come connect contact
cost cover deliver do email exchange expire find get give go have help hold include install keep
know last leave make mean need offer open order pay pick place reach receive refund register reset
return run see sell send set ship sign start stay stop support take talk track update use work write
""".split()
)
INDIRECT_FRAMES = (
    "I was wondering {}.",
    "Could you tell me {}?",
    "Do you know {}?",
    "Can you tell me {}?",
    "I'd like to know {}.",
)
KEEP_QUESTION_FRAMES = ("Quick question: {}", "I was wondering: {}", "Can I ask something? {}")
REQUEST_FRAMES = ("I need some help. {}", "{} Can you help me with that?")
ZH_WH = re.compile(r"什么|多少|几|哪|怎么|怎样|如何|谁|为什么|为何|多久|多长")
ZH_PREFIXES = ("请问，{}", "我想问一下，{}", "想咨询一下，{}", "麻烦问下，{}")
ZH_WH_FRAMES = ("能告诉我{}吗？", "我想知道{}。", "你知道{}吗？")
ZH_REQUEST_FRAMES = ("想咨询一下，{}。", "麻烦帮我看一下，{}。")


def third_person(verb: str) -> str:
    """'open' -> 'opens', 'ship' -> 'ships', 'apply' -> 'applies': the verb after 'does' moves."""
    irregular = {"have": "has", "do": "does", "go": "goes", "be": "is"}
    if verb in irregular:
        return irregular[verb]
    if re.search(r"(?:s|sh|ch|x|z|o)$", verb):
        return verb + "es"
    if re.search(r"[^aeiou]y$", verb):
        return verb[:-1] + "ies"
    return verb + "s"


def _subject_length(words: list[str]) -> int | None:
    """How many words the subject after 'does'/a modal takes; None when unsure (then no rewrite)."""
    first = words[0].lower()
    if first in PRONOUNS:
        return 1
    lengths = (2, 3) if first in DETERMINERS else (1, 2)
    return next((n for n in lengths if len(words) > n and words[n].lower() in VERBS), None)


def _noun_phrase_length(words: list[str]) -> int | None:
    """Words of the noun phrase after 'is/are' ("your hours" in "your hours on Sunday"), or None when
    the wh-word is itself the subject ("Which items are in the box?")."""
    first = words[0].lower()
    if first not in DETERMINERS and first not in PRONOUNS and not PRIVATE_USE.match(words[0]):
        return None
    length = 1
    while length < len(words) and words[length].lower() not in PREPOSITIONS:
        length += 1
    return length


def embedded_clause(question: str) -> str | None:
    """'What are your hours on Sunday' -> 'what your hours are on Sunday'; 'Do you ship to Canada'
    -> 'if you ship to Canada'. None when the question's shape is not one handled safely."""
    question = re.sub(r"(?i)^(what|where|when|how|who)['’]s\b", r"\1 is", question)
    match = re.match(
        rf"(?i)^(?:(?P<wh>(?:{WH})(?: {_WORD})?) )?(?P<aux>is|are|was|were|do|does|did|"
        rf"{'|'.join(sorted(MODALS))}) (?P<rest>.+)$",
        question,
    )
    if match is None or match["rest"].split()[-1].lower() in PREPOSITIONS | {"of"}:
        return None  # "What is it made of": a stranded preposition does not survive the move
    wh = lower_first(match["wh"]) if match["wh"] else "if"
    aux, words = match["aux"], match["rest"].split()
    kind = aux.lower()
    if kind == "did":
        return None  # would need the verb's past tense
    if kind in ("is", "are", "was", "were"):
        if not match["wh"]:  # "Is the Aurora kettle dishwasher safe": where the subject ends is unknown
            return f"if {words[0]} {aux.lower()} {' '.join(words[1:])}" if words[0].lower() in PRONOUNS else None
        length = _noun_phrase_length(words)
        if length is None:
            return f"{wh} {aux.lower()} {' '.join(words)}"
        return " ".join([wh, *words[:length], aux.lower(), *words[length:]])
    if kind == "do":
        return " ".join([wh, *words])
    length = _subject_length(words)
    if length is None or len(words) <= length:
        return None
    if kind == "does":
        return " ".join([wh, *words[:length], third_person(words[length].lower()), *words[length + 1 :]])
    return " ".join([wh, *words[:length], aux.lower(), *words[length:]])


def _indirect_en(question: str) -> list[str]:
    body, end = split_end(question)
    greeting = re.match(r"(?i)^(?:hi|hello|hey)(?: there)?[,!]?\s+", body)
    lead = greeting.group() if greeting else ""
    core = body[len(lead) :]
    clause = embedded_clause(core) if core else None
    if clause is not None:
        return [lead + (lower_first(f) if lead else f).format(clause) for f in INDIRECT_FRAMES]
    frames = KEEP_QUESTION_FRAMES if "?" in end else REQUEST_FRAMES
    return [f.format(question) for f in frames]


def _indirect_zh(sentence: str) -> list[str]:
    body, end = split_end(sentence)
    body = re.sub(r"^请问[，,]?", "", body)
    if not ("?" in end or "？" in end or body.endswith(("吗", "呢"))):
        return [f.format(body) for f in ZH_REQUEST_FRAMES]
    forms = [p.format(body + "？") for p in ZH_PREFIXES]
    lead, comma, clause = body.rpartition("，")  # "我想打电话咨询，号码是多少": frame the asking clause
    if ZH_WH.search(clause) and not clause.endswith(("吗", "呢")):
        forms += [lead + comma + f.format(clause) for f in ZH_WH_FRAMES]
    return forms


def indirect(text: str, lang: str) -> list[str]:
    """Indirect questions: 'I was wondering what your hours are', '我想问一下，…'."""
    found = _around_question(text)
    if found is None:
        return []
    before, question, after = found
    forms = _indirect_en(question) if lang == "en" else _indirect_zh(question)
    return [before + form + after for form in forms]


# --------------------------------------------------------------------------- family: reorder
FRONTABLE = ("on", "at", "in", "for", "during", "after", "before", "within", "from", "if", "when")
ZH_TIME = r"今天|明天|后天|周末|工作日|平时|平日|节假日|晚上|早上|上午|下午|周[一二三四五六日末]|星期[一二三四五六日天]"
ZH_SUBJECT = r"你们|您们|您|你|我们|我|贵店|贵公司|店里|客服"


def _front_trailing_phrase(text: str) -> list[str]:
    """'How do I apply my rewards at checkout?' -> 'At checkout, how do I apply my rewards?'"""
    body, end = split_end(text)
    match = re.match(rf"(?i)^(?P<main>[^,;:]+\S) (?P<tail>(?:{'|'.join(FRONTABLE)}) [^,;:]+)$", body)
    if not match or len(match["main"].split()) < 3 or len(match["tail"].split()) > 5:
        return []
    return [f"{upper_first(match['tail'])}, {lower_first(match['main'])}{end}"]


def _swap_names(text: str) -> list[str]:
    """'on Saturday and Sunday' -> 'on Sunday and Saturday': only masked names, whose order carries
    no fact (swapping two amounts could pair a price with the wrong product)."""
    return [
        text[: m.start()] + f"{m[2]} and {m[1]}" + text[m.end() :]
        for m in re.finditer(r"([\ue000-\ue7ff]) and ([\ue000-\ue7ff])", text)
    ]


def _swap_clauses(text: str, lang: str) -> list[str]:
    """'My order is late, what can I do?' -> 'What can I do? My order is late.'"""
    comma = r"[，,]" if lang == "zh" else r"(?<=[,.!]) "
    parts = re.split(comma, text.strip(), maxsplit=1)
    if len(parts) != 2 or HAS_GREETING.match(parts[0]) or not split_end(parts[1])[1]:
        return []
    (first, first_end), second = split_end(parts[0].rstrip(",，")), parts[1].strip()
    if lang == "zh":
        return [f"{second}{first}{first_end or '。'}"] if len(first) >= 3 else []
    if len(first.split()) < 3 or len(second.split()) < 3:
        return []
    return [f"{upper_first(second)} {upper_first(first)}{first_end or '.'}"]


def _front_time_zh(text: str) -> list[str]:
    """'你们周末营业吗' <-> '周末你们营业吗'."""
    later = re.match(rf"^({ZH_SUBJECT})({ZH_TIME})(.+)$", text)
    if later:
        return [later[2] + later[1] + later[3]]
    front = re.match(rf"^({ZH_TIME})[，,]?({ZH_SUBJECT})(.+)$", text)
    return [front[2] + front[1] + front[3]] if front else []


def reorder(text: str, lang: str) -> list[str]:
    """A trailing phrase moved to the front, two names swapped, or two clauses swapped."""
    if lang == "zh":
        return _front_time_zh(text) + _swap_clauses(text, "zh")
    found = _around_question(text)
    fronted = [] if found is None else [found[0] + form + found[2] for form in _front_trailing_phrase(found[1])]
    return fronted + _swap_names(text) + _swap_clauses(text, "en")


# --------------------------------------------------------------------------- family: synonym
# (pattern, replacements); a replacement may use the pattern's groups. Patterns run on the masked
# text, so a fact is never replaced. Directional where a word has two senses: "order" is only ever
# a replacement, because "my order" (noun) must not become "my buy".
SYNONYMS = {
    "en": (
        (r"\bprice\b", ("cost",)),
        (r"\bthe cost\b", ("the price",)),
        (r"^how much is\b", ("what's the price of", "what do you charge for")),
        (r"\bbuy\b", ("purchase", "order")),
        (r"\bbought\b", ("purchased", "ordered")),
        (r"\bpurchase\b(?= (?:a|an|the|it|one)\b)", ("buy",)),
        (r"\bpurchased\b", ("bought",)),
        (r"\bship\b", ("deliver", "send")),
        (r"\bships\b", ("delivers",)),
        (r"\bshipped\b", ("delivered", "sent")),
        (r"\bdeliver\b", ("ship",)),
        (r"\bshipping\b", ("delivery",)),
        (r"\bdelivery\b", ("shipping",)),
        (r"\b(get|want|need) a refund\b", (r"\1 my money back",)),
        (r"\bmy money back\b", ("a refund",)),
        (r"\b(your|the|our|support|store|office|weekend) hours\b", (r"\1 opening times", r"\1 business hours")),
        (r"\bopening (?:hours|times)\b", ("business hours", "opening times")),
        (r"\bcancel\b", ("stop",)),
        (r"\breturn (it|them|this|that)\b", (r"send \1 back",)),
        (r"\breturn (?=(?:a|an|the|my|this|these|those|an)\b)", ("send back ",)),
        (r"\bhelp me\b", ("assist me",)),
        (r"\bneed help\b", ("need assistance",)),
        (r"\bassist\b", ("help",)),
        (r"\bcontact (?=(?:you|support|your|the|customer)\b)", ("reach ", "get in touch with ")),
        (r"\breach (?=(?:you|support|your|the|customer)\b)", ("contact ",)),
        (r"\bdiscount code\b", ("promo code", "coupon code")),
        (r"\bcoupon(?: code)?\b", ("promo code", "discount code")),
        (r"\bpromo code\b", ("discount code", "coupon")),
        (r"\bdiscount\b(?! code)", ("coupon", "promo code")),
        (r"\bmy order\b", ("my purchase", "my package")),
        (r"\bitem\b", ("product",)),
        (r"\bproduct\b", ("item",)),
        (r"\bwant to\b", ("would like to",)),
        (r"\bwould like to\b", ("want to",)),
        (r"^can i\b", ("is it possible to",)),
        (r"\bhow long\b", ("how much time",)),
        (r"\btell me\b", ("let me know",)),
    ),
    "zh": (
        (r"多少钱", ("价格是多少", "卖多少钱")),
        (r"价格是多少", ("多少钱",)),
        (r"价格(?!是多少)", ("价钱", "售价")),
        (r"退款", ("退钱",)),
        (r"退钱", ("退款",)),
        (r"发货", ("寄出", "发出")),
        (r"寄出", ("发货",)),
        (r"营业时间", ("开门时间", "上班时间")),
        (r"几点开门", ("什么时候开门", "营业时间是几点")),
        (r"取消", ("撤销",)),
        (r"(?<=[么何想要能以])退货", ("退回商品", "把东西退回去")),  # the verb, not 退货流程
        (r"联系", ("联络", "找到")),
        (r"帮忙", ("帮助",)),
        (r"优惠券", ("折扣码", "优惠码")),
        (r"折扣码", ("优惠券", "优惠码")),
        (r"优惠码", ("优惠券", "折扣码")),
        (r"折扣(?!码)", ("优惠",)),
        (r"购买", ("买",)),
        (r"(?<!购)买", ("购买",)),
        (r"运费", ("邮费", "快递费")),
        (r"邮费", ("运费",)),
        (r"快递", ("物流",)),
        (r"怎么", ("如何", "怎样")),
        (r"如何", ("怎么",)),
        (r"什么时候", ("何时", "啥时候")),
        (r"可以", ("能",)),
        (r"多久", ("多长时间",)),
        (r"多长时间", ("多久",)),
        (r"送到", ("寄到", "配送到")),
    ),
}


def _same_case(replacement: str, original: str) -> str:
    return upper_first(replacement) if original[:1].isupper() else replacement


def synonym(text: str, lang: str) -> list[str]:
    """One phrase swapped for a synonym from the curated lexicon (one form per match and choice)."""
    forms = []
    for pattern, replacements in SYNONYMS[lang]:
        for match in re.finditer(pattern, text, flags=re.I):
            for replacement in replacements:
                new = _same_case(match.expand(replacement), match.group())
                forms.append(text[: match.start()] + new + text[match.end() :])
    return forms


# ----------------------------------------------------------------------------- family: casing
HALF_WIDTH = str.maketrans({"？": "?", "，": ",", "！": "!", "。": ".", "：": ":", "；": ";"})


def casing(text: str, lang: str) -> list[str]:
    """English: all lowercase, or no capital at the start (facts are masked and keep theirs).
    Chinese has no case; its analogue is typing with the input method in English mode, which gives
    half-width punctuation."""
    if lang == "zh":
        return [text.translate(HALF_WIDTH)]
    return [text.lower(), lower_first(text)]


# ------------------------------------------------------------------------------ family: punct
def punct(text: str, lang: str) -> list[str]:
    """No final punctuation, doubled question marks, no commas."""
    body, end = split_end(text)
    question, comma = ("？", "，") if lang == "zh" else ("?", ",")
    forms = [body] if end else []
    if question in text:
        forms.append(re.sub(rf"{re.escape(question)}+", question * 2, text))
    if comma in body:
        forms.append(text.replace(comma, " " if lang == "zh" else ""))
    return forms


# ------------------------------------------------------------------------------- family: typo
KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
NEIGHBOURS = {row[i]: row[max(i - 1, 0) : i] + row[i + 1 : i + 2] for row in KEYBOARD_ROWS for i in range(len(row))}
# Pinyin input methods write a homophone, not a neighbouring key: the common Chinese typo.
ZH_HOMOPHONES = {
    "的": "得",
    "得": "的",
    "在": "再",
    "再": "在",
    "吗": "嘛",
    "那": "哪",
    "哪": "那",
    "做": "作",
    "已": "以",
    "账": "帐",
    "订": "定",
    "定": "订",
}


def _typos_en(text: str) -> list[str]:
    forms = []
    # Only lowercase words of 5+ letters: capitalised names, codes and numbers are masked anyway.
    for match in re.finditer(r"(?<![A-Za-z'’\ue000-\uf8ff])[a-z]{5,}(?![A-Za-z'’\ue000-\uf8ff])", text):
        word = match.group()
        edits = [word[:i] + word[i + 1 :] for i in range(1, len(word) - 1)]  # a dropped letter
        edits += [word[:i] + key + word[i + 1 :] for i in range(1, len(word)) for key in NEIGHBOURS[word[i]]]
        forms += [text[: match.start()] + edit + text[match.end() :] for edit in edits]
    return forms


def _typos_zh(text: str) -> list[str]:
    forms = [text[:i] + ZH_HOMOPHONES[c] + text[i + 1 :] for i, c in enumerate(text) if c in ZH_HOMOPHONES]
    return forms + [text[:i] + text[i + 1 :] for i, c in enumerate(text) if c == "的"]  # a dropped 的


def typo(text: str, lang: str) -> list[str]:
    """One typing slip: a neighbouring key or a dropped letter (zh: a homophone, a dropped 的)."""
    return _typos_zh(text) if lang == "zh" else _typos_en(text)


# ----------------------------------------------------------------------------- rules generator
FAMILY_FUNCTIONS: dict[str, Callable[[str, str], list[str]]] = {
    "synonym": synonym,
    "reorder": reorder,
    "indirect": indirect,
    "wrap": wrap,
    "casing": casing,
    "punct": punct,
    "typo": typo,
}
# The order families apply in: words, then sentence order, then the frame (reordering a framed
# question would front its embedded clause: "When the store opens, I'd like to know"), then surface
# noise last, so a typo is never undone by a later rule.
APPLY_ORDER = tuple(FAMILY_FUNCTIONS)


def parse_families(value: str | Sequence[str]) -> tuple[str, ...]:
    """'wrap,typo' or ['wrap', 'typo'] -> ('wrap', 'typo'), checked against FAMILIES."""
    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    unknown = [n for n in names if n not in FAMILIES]
    if unknown or not names:
        what = f"unknown {', '.join(map(repr, unknown))}" if unknown else "none given"
        raise UserInputError(f"families: {what}; allowed: {', '.join(FAMILIES)}")
    return tuple(dict.fromkeys(names))


class RulesGenerator:
    """Offline phrasings by rule families, deterministic for a seed; facts are masked so no rule
    can change a number, amount, email, code or name."""

    name = "rules"

    def __init__(self, families: str | Sequence[str] = FAMILIES):
        self.families = parse_families(families)

    def _pick(self, rng: random.Random) -> list[str]:
        """A random non-empty set of the chosen families, with a wording family when any is chosen."""
        picked = [f for f in self.families if rng.random() < 0.5]
        wording = [f for f in self.families if f in WORDING_FAMILIES]
        pool = wording or list(self.families)
        if not set(picked) & set(pool):
            picked.append(rng.choice(pool))
        return [f for f in APPLY_ORDER if f in picked]

    def _one(self, masked: Masked, lang: str, rng: random.Random, cache: dict) -> str:
        text = masked.text
        for family in self._pick(rng):
            key = (family, text)
            if key not in cache:
                cache[key] = FAMILY_FUNCTIONS[family](text, lang)
            if cache[key]:
                text = rng.choice(cache[key])
        return tidy(masked.unmask(text))

    def generate(self, text: str, n: int, lang: str, seed: int = 0) -> list[str]:
        masked = mask(text)
        # Seeded by the text too: two source turns with one seed still get their own draws.
        rng = random.Random(f"{seed}|{text}")
        seen, phrasings, cache = {tidy(text)}, [], {}
        for _ in range(n * ATTEMPTS_PER_PHRASING):
            if len(phrasings) >= n:
                break
            phrasing = self._one(masked, lang, rng, cache)
            if phrasing not in seen:
                seen.add(phrasing)
                phrasings.append(phrasing)
        return phrasings


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
def normalise(text: str) -> str:
    """Case, punctuation and spacing removed (full-width forms folded): what 'a copy' compares."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text)
    return " ".join(text.split())


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
    descriptor, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            for conversation in conversations:
                handle.write(json.dumps({"messages": conversation}, ensure_ascii=False) + "\n")
        os.replace(temporary, out)
    except BaseException:
        os.unlink(temporary)
        raise


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
