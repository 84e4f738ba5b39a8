"""What one prompt expects to see: `PromptSpec`, and its validation.

The schema is the suite YAML's (evaluation/suites/*.yaml):
`expect` maps a class to `{count: N}` (exactly N) or `{min: N}` (at least N);
`colors` maps cat/dog to a fur colour; `relations` lists `[a, left_of|right_of|above|below, b]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datasets.scenes_draw import FUR_RGB
from evaluation.judge import CLASSES, RELATIONS, plural
from generation.sampling_options import clean_prompt, text_problem

CATEGORIES = ("single_object", "two_objects", "counting", "position", "faces", "negatives", "colors")
COLOR_CLASSES = ("cat", "dog")
COLORS = tuple(FUR_RGB)
OPPOSITE = {"left_of": "right_of", "right_of": "left_of", "above": "below", "below": "above"}


class SpecError(ValueError):
    """A prompt spec that cannot be judged; the message names where it came from."""


@dataclass(frozen=True)
class PromptSpec:
    prompt: str
    category: str
    expect: dict[str, dict[str, int]]
    colors: dict[str, str] = field(default_factory=dict)
    relations: tuple[tuple[str, str, str], ...] = ()

    def to_dict(self) -> dict:
        d = {"prompt": self.prompt, "category": self.category, "expect": self.expect}
        if self.colors:
            d["colors"] = self.colors
        if self.relations:
            d["relations"] = [list(r) for r in self.relations]
        return d

    def excluding(self, classes) -> "PromptSpec":
        """This spec with "no <class>" for each of `classes` (relations and colours on them dropped)."""
        classes = set(classes)
        expect = {**self.expect, **{c: {"count": 0} for c in classes}}
        colors = {c: v for c, v in self.colors.items() if c not in classes}
        relations = tuple(r for r in self.relations if r[0] not in classes and r[2] not in classes)
        return PromptSpec(self.prompt, self.category, expect, colors, relations)

    def seen_by(self, classes) -> "PromptSpec":
        """Only what detectors of `classes` can check: without a cat detector, "a cat" cannot fail
        for want of a cat (nor "no cat" pass for want of one)."""
        classes = set(classes)
        expect = {c: r for c, r in self.expect.items() if c in classes}
        colors = {c: v for c, v in self.colors.items() if c in classes}
        relations = tuple(r for r in self.relations if r[0] in classes and r[2] in classes)
        return PromptSpec(self.prompt, self.category, expect, colors, relations)

    @classmethod
    def absent(cls, prompt: str, classes) -> "PromptSpec":
        """Only negative expectations: for prompts the parser cannot read."""
        return cls(prompt, "negatives", {c: {"count": 0} for c in classes})

    @property
    def expectation_text(self) -> str:
        """"exactly 2 cats, no dog, at least 1 face; cat left of face; black cat" — for tables,
        the report and the UI, in the words of the judge's reasons."""
        def count(c, r):
            n = r.get("count", r.get("min"))
            return f"no {c}" if n == 0 else f"{'exactly' if 'count' in r else 'at least'} {n} {plural(c, n)}"

        parts = [", ".join(count(c, r) for c, r in self.expect.items())]
        parts += [f"{a} {rel.replace('_', ' ')} {b}" for a, rel, b in self.relations]
        parts += [f"{col} {plural(c, next(iter(self.expect.get(c, {}).values()), 1))}" for c, col in self.colors.items()]
        return "; ".join(p for p in parts if p)


def spec_from_dict(d: dict, where: str = "prompt") -> PromptSpec:
    """Validate one suite entry; errors name `where` (e.g. "suite.yaml, prompt 3") and the field."""
    if not isinstance(d, dict):
        raise SpecError(f"{where}: expected a mapping with prompt/category/expect, got {type(d).__name__}")
    for key in ("prompt", "category", "expect"):
        if key not in d:
            raise SpecError(f"{where}: missing field {key!r}")
    unknown = set(d) - {"prompt", "category", "expect", "colors", "relations"}
    if unknown:
        raise SpecError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    prompt = d["prompt"]
    if not isinstance(prompt, str) or not clean_prompt(prompt):
        raise SpecError(f"{where}: 'prompt' must be a non-empty string, got {prompt!r}")
    problem = text_problem(prompt)
    if problem:
        raise SpecError(f"{where}: 'prompt' {problem}")
    where = f"{where} ({prompt!r})"
    if d["category"] not in CATEGORIES:
        raise SpecError(f"{where}: unknown category {d['category']!r}; choose from {', '.join(CATEGORIES)}")
    expect = d["expect"]
    if not isinstance(expect, dict) or not expect:
        raise SpecError(f"{where}: 'expect' must map classes to {{count: N}} or {{min: N}}")
    clean = {}
    for cls, rule in expect.items():
        if cls not in CLASSES:
            raise SpecError(f"{where}: unknown class {cls!r} in expect; classes are {', '.join(CLASSES)}")
        if not isinstance(rule, dict) or len(rule) != 1 or next(iter(rule)) not in ("count", "min"):
            raise SpecError(f"{where}: expect.{cls} must be {{count: N}} or {{min: N}}, got {rule!r}")
        (kind, n), = rule.items()
        if isinstance(n, bool) or not isinstance(n, int) or n < 0 or (kind == "min" and n == 0):
            raise SpecError(f"{where}: expect.{cls}.{kind} must be an integer >= {1 if kind == 'min' else 0}, got {n!r}")
        clean[cls] = {kind: n}
    colors = d.get("colors") or {}
    if not isinstance(colors, dict):
        raise SpecError(f"{where}: 'colors' must map a class to a colour, got {colors!r}")
    for cls, col in colors.items():
        if cls not in COLOR_CLASSES:
            raise SpecError(f"{where}: colors.{cls}: colours are judged for {', '.join(COLOR_CLASSES)} only")
        if col not in COLORS:
            raise SpecError(f"{where}: colors.{cls}: unknown colour {col!r}; colours are {', '.join(COLORS)}")
        if cls not in clean or clean[cls].get("count") == 0:
            raise SpecError(f"{where}: colors.{cls} names a colour for a class the prompt does not expect")
    relations = []
    given = d.get("relations") or []
    if not isinstance(given, list):
        raise SpecError(f"{where}: 'relations' must be a list of [a, relation, b], got {given!r}")
    for k, rel in enumerate(given):
        if not isinstance(rel, (list, tuple)) or len(rel) != 3:
            raise SpecError(f"{where}: relations[{k}] must be [a, relation, b], got {rel!r}")
        a, r, b = rel
        if r not in RELATIONS:
            raise SpecError(f"{where}: relations[{k}]: unknown relation {r!r}; choose from {', '.join(RELATIONS)}")
        for cls in (a, b):
            if cls not in CLASSES:
                raise SpecError(f"{where}: relations[{k}]: unknown class {cls!r}")
            if cls not in clean or clean[cls].get("count") == 0:
                raise SpecError(f"{where}: relations[{k}] uses {cls!r}, which 'expect' does not require")
        if a == b:
            raise SpecError(f"{where}: relations[{k}]: {a} {r} {b} cannot be judged (nothing tells which {a} is which)")
        if (a, OPPOSITE[r], b) in relations or (b, r, a) in relations:
            raise SpecError(f"{where}: relations[{k}]: {a} {r} {b} contradicts an earlier relation")
        relations.append((a, r, b))
    return PromptSpec(clean_prompt(prompt), d["category"], clean, dict(colors), tuple(relations))
