"""Read a free-form prompt of the demo world's language as a `PromptSpec`.

    parse_prompt("two black cats to the left of a face")  ->  expect cat==2, face>=1, dog==0, ...

The language is the caption grammar of `datasets.scenes`: noun phrases
("a cat", "an orange dog", "three faces", "one dog") joined by "and", or two
noun phrases joined by a relation ("to the left of", "to the right of",
"above", "below"), optionally after "a photo of"; or an empty scene ("nothing",
"an empty room", "a plain background"). The world is closed: a class the prompt
does not name is expected to be absent. "a"/"an" means at least one, a number
word means exactly that many. A relation between two objects of the same class
is not judged (nothing tells the judge which cat is "the black one"). A prompt outside the grammar gives a ParseError
that says which words were not understood, so the UI can say "not judged".
"""

from __future__ import annotations

import re

from datasets.scenes import COUNT_WORDS, EMPTY_CAPTIONS, PHOTO_PREFIX
from evaluation.judge import CLASSES
from evaluation.spec import COLOR_CLASSES, COLORS, PromptSpec
from generation.sampling_options import clean_prompt, text_problem

RELATION_WORDS = {"to the left of": "left_of", "to the right of": "right_of", "above": "above", "below": "below"}
NUMBERS = {w: n for n, w in COUNT_WORDS.items()} | {str(n): n for n in COUNT_WORDS}
# class words inside a noun phrase: a second object not joined by "and" ("a cat a cat")
OBJECT_WORDS = {*CLASSES, *(f"{c}s" for c in CLASSES)}
EMPTY = set(EMPTY_CAPTIONS) | {"a plain background", "an empty background", "no animals", "no objects"}


class ParseError(ValueError):
    """The prompt is outside the language the judge understands."""


def _noun_phrase(text: str, prompt: str) -> tuple[str, int, bool, str | None]:
    """"two black cats" -> ("cat", 2, exact=True, "black")."""
    words = text.split()
    if len(words) < 2:
        raise ParseError(f"cannot judge {prompt!r}: {text!r} is not a counted object like 'a cat' or 'two dogs'")
    head, *middle, noun = words
    if head in ("a", "an"):
        count, exact = 1, False
    elif head in NUMBERS:
        count, exact = NUMBERS[head], True
    else:
        raise ParseError(f"cannot judge {prompt!r}: {text!r} should start with a, an or a number word (one..four)")
    label = noun[:-1] if noun.endswith("s") and noun[:-1] in CLASSES else noun
    if {w.strip(",;") for w in middle} & OBJECT_WORDS:  # "a cat a cat", "a cat, a dog": one phrase, two objects
        raise ParseError(f"cannot judge {prompt!r}: {text!r} names more than one object; objects are joined by "
                         "'and', e.g. 'a cat and a dog'")
    if label not in CLASSES:
        raise ParseError(f"cannot judge {prompt!r}: {noun!r} is not one of {', '.join(CLASSES)}")
    if (count > 1) != (noun != label):
        raise ParseError(f"cannot judge {prompt!r}: {text!r} mixes singular and plural")
    color = None
    if middle:
        if len(middle) != 1 or middle[0] not in COLORS or label not in COLOR_CLASSES:
            known = f"({', '.join(COLORS)})" if label in COLOR_CLASSES else "(none: faces have no colour here)"
            raise ParseError(f"cannot judge {prompt!r}: {' '.join(middle)!r} is not a colour the judge knows "
                             f"for {label} {known}; an object reads "
                             + (f"'a [colour] {label}'" if label in COLOR_CLASSES else f"'a {label}'"))
        color = middle[0]
    return label, count, exact, color


def parse_prompt(prompt: str) -> PromptSpec:
    """The expectation a prompt states; ParseError if the judge cannot read it."""
    if not isinstance(prompt, str):
        raise ParseError(f"a prompt is a string, got {type(prompt).__name__}")
    problem = text_problem(prompt)
    if problem:
        raise ParseError(problem)
    prompt = clean_prompt(prompt)  # as a suite file's prompts are read: a run's prompts must read back the same
    text = re.sub(r"\s+", " ", prompt.lower().rstrip("."))
    if not text:
        raise ParseError("cannot judge an empty prompt")
    if text.startswith(PHOTO_PREFIX):
        text = text[len(PHOTO_PREFIX):]
    if text in EMPTY:
        return PromptSpec(prompt, "negatives", {c: {"count": 0} for c in CLASSES})

    found = sum(len(re.findall(rf"(?<!\S){words}(?!\S)", text)) for words in RELATION_WORDS)
    if found > 1:
        raise ParseError(f"cannot judge {prompt!r}: one relation a prompt, between two objects "
                         "(e.g. 'a cat to the left of a dog')")
    relations, sides = [], [text]
    for words, rel in RELATION_WORDS.items():
        if f" {words} " in text:
            left, right = text.split(f" {words} ", 1)
            sides = [left, right]
            relations.append(rel)
            break
    try:
        phrases = [_noun_phrase(p.strip(), prompt) for side in sides for p in side.split(" and ")]
    except ParseError:
        # a relation misspelt ("to the lft of") reads like one too: not two objects missing an "and"
        if not relations and re.search(r"\b(left|right|next to|beside|near|on top|under|behind|in front|"
                                       r"to the \w+ of)\b", text):
            raise ParseError(f"cannot judge {prompt!r}: the relations the judge reads are "
                             f"{', '.join(RELATION_WORDS)}, e.g. 'a cat to the left of a dog'") from None
        raise
    if relations and len(phrases) != 2:
        raise ParseError(f"cannot judge {prompt!r}: a relation must join exactly two objects")

    totals: dict[str, list[int | bool]] = {}
    colors: dict[str, set] = {}
    for label, count, exact, color in phrases:
        n, ex = totals.get(label, [0, True])
        totals[label] = [n + count, ex and exact]
        colors.setdefault(label, set()).add(color)
    expect = {c: ({"count": n} if exact else {"min": n}) for c, (n, exact) in totals.items()}
    expect |= {c: {"count": 0} for c in CLASSES if c not in expect}
    # one colour for the whole class ("two black cats"); mixed colours are not judged per object
    named = {c: next(iter(s)) for c, s in colors.items() if len(s) == 1 and None not in s}

    rel = ()
    if relations and phrases[0][0] != phrases[1][0]:
        # "a black cat to the left of a white cat": boxes carry no colour identity the
        # judge could trust, so only the counts (and the shared colour, if any) are judged
        rel = ((phrases[0][0], relations[0], phrases[1][0]),)
    labels = [c for c in CLASSES if c in totals]
    if rel:
        category = "position"
    elif relations:  # of one class: judged as the count it implies ("at least 2 cats")
        category = "counting"
    elif labels == ["face"]:
        category = "faces"
    elif named:
        category = "colors"
    elif any(p[2] or p[1] > 1 for p in phrases) or any(n > 1 for n, _ in totals.values()):
        category = "counting"  # "a white cat and a black cat" asks for two cats, as "two cats" does
    elif len(labels) > 1:
        category = "two_objects"
    else:
        category = "single_object"
    return PromptSpec(prompt, category, expect, named, rel)
