"""The offline paraphrase rules of core.augment: new phrasings of a customer's question in English
and Chinese, with every fact in it (numbers, amounts, emails, codes, names) kept as written.

Families, each selectable by name so what it buys can be measured on its own: wrap (greetings and
closings), indirect ("I was wondering what ..."), reorder (a trailing phrase or clause moved to the
front), synonym (a small customer-service lexicon), casing, punct and typo (surface noise, put on
top of a wording change). Facts are masked to one private-use character each before a rule runs,
so no rule can break them.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.errors import UserInputError

FAMILIES = ("wrap", "indirect", "reorder", "synonym", "casing", "punct", "typo")
# Families that change the wording; the others only add surface noise, which alone leaves a
# near-copy of the source that the filters drop, so noise rides on a wording change when one is on.
WORDING_FAMILIES = ("wrap", "indirect", "reorder", "synonym")
ATTEMPTS_PER_PHRASING = 40  # rules: random family combinations tried per phrasing wanted


def normalise(text: str) -> str:
    """Case, punctuation and spacing removed (full-width forms folded): what 'a copy' compares."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text)
    return " ".join(text.split())


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
