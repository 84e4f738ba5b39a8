"""The judge: pure functions from (what a prompt expects, what the detectors found) to a verdict.

Every threshold lives in one frozen, versioned `JudgeRules`; its `to_dict()` is
written into every result row, so a number is never separated from the rules
that produced it. The rules, in the order they are applied:

1. Merge: detections below `presence_conf` are dropped; two detections of
   different classes whose boxes overlap with IoU >= `dedup_iou` are one object
   seen by two detectors (a cat's face found by the face model), and only the more
   confident one is kept. Two detections of one class where the smaller box lies at
   least `nest_cover` inside the larger are one object seen whole and in part (a
   blob under nested boxes; judge-2): the more confident is kept. The scenes world
   never nests objects (no box covers more than half of another), and the detector's
   own NMS, by IoU, lets such pairs through.
2. Presence and `{min: N}`: at least N detections of the class at `presence_conf`.
3. Exact counts `{count: N}`, N >= 1: exactly N detections at the stricter
   `count_conf` (N-1 and N+1 both fail).
   `{count: 0}` (absence, negatives): no detection of the class at `presence_conf`.
4. Relations `[a, left_of, b]`: the most confident a and the most confident b
   (two different detections); their box centres must differ by more than
   `position_margin` x image side in the stated direction.
5. Colours `{cat: black}`: every detection of the class at `presence_conf` (those
   below `count_conf` too: a cat seen at all is a cat in the picture) measures as that
   colour (`evaluation.colors`; a detection that carries a known "color", such as
   ground truth, is taken at its word); without the image a measured colour is
   recorded as not judged and does not fail the verdict.
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

CLASSES = ("cat", "dog", "face")
RELATIONS = ("left_of", "right_of", "above", "below")


@dataclass(frozen=True)
class JudgeRules:
    version: str = "judge-2"
    presence_conf: float = 0.3
    count_conf: float = 0.45
    position_margin: float = 0.05  # fraction of the image side
    dedup_iou: float = 0.6
    color_distance: float = 70.0   # RGB distance from a box's main fill to a named colour
    nest_cover: float | None = 0.7  # share of the smaller same-class box inside the larger; None: off (judge-1)

    def __post_init__(self):
        for name in ("presence_conf", "count_conf", "position_margin", "dedup_iou", "color_distance", "nest_cover"):
            v = getattr(self, name)
            if not (v is None and name == "nest_cover") and (isinstance(v, (bool, str)) or not isinstance(v, numbers.Real)):
                raise ValueError(f"JudgeRules.{name} must be a number, got {v!r}")
        if not 0.0 <= self.color_distance <= 442.0:  # 442 = the RGB cube's diagonal
            raise ValueError(f"JudgeRules.color_distance must be in [0, 442], got {self.color_distance}")
        for name in ("presence_conf", "count_conf", "position_margin", "dedup_iou"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"JudgeRules.{name} must be in [0, 1], got {v}")
        if self.nest_cover is not None and not 0.0 < self.nest_cover <= 1.0:
            raise ValueError(f"JudgeRules.nest_cover must be in (0, 1] or None (off), got {self.nest_cover}")
        if self.count_conf < self.presence_conf:
            raise ValueError(f"JudgeRules.count_conf ({self.count_conf}) must be >= presence_conf "
                             f"({self.presence_conf}): counting is the stricter check")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, rules: Mapping[str, Any]) -> "JudgeRules":
        """The rules a run recorded (its summary.json or rows): a rule it does not name did not
        exist yet when it ran, so it is off (judge-1 had no nest_cover), not today's default.
        Names of a later version are left out."""
        known = {k: v for k, v in rules.items() if k in cls.__dataclass_fields__}
        return cls(**({"nest_cover": None} | known))


JUDGE_1 = JudgeRules(version="judge-1", nest_cover=None)  # the rules of every run before judge-2


# how each rule reads in a report; a rule without a phrase here is shown as name=value
_RULE_PHRASES = {
    "presence_conf": "presence at confidence >= {}",
    "count_conf": "exact counts at >= {} (N+1 fails)",
    "position_margin": "positions by box centres with a {:.0%} margin",
    "dedup_iou": "boxes of two classes at IoU >= {} are one object",
    "color_distance": "colours: the main fill within RGB distance {:g} of the name",
    "nest_cover": "a box of one class at least {:.0%} inside another is one object",
}


def describe_rules(rules: Mapping[str, Any]) -> str:
    """JudgeRules.to_dict() (as a run's summary.json holds it) in words, for reports and the app."""
    parts = []
    for name, value in rules.items():
        if name == "version" or value is None:  # a rule the version does not have (judge-1: no nest_cover)
            continue
        phrase = _RULE_PHRASES.get(name)
        parts.append(phrase.format(value) if phrase and isinstance(value, (int, float)) else f"{name}={value}")
    version = rules.get("version")
    return (f"{version}: " if version else "") + "; ".join(parts)


DEFAULT_RULES = JudgeRules()
VERSIONS = {"judge-1": JUDGE_1, "judge-2": DEFAULT_RULES}  # --judge: an older run's rules, to finish or compare it


@dataclass(frozen=True)
class Found:
    """One detection as the judge sees it (any object with label/confidence/box converts)."""
    label: str
    confidence: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels
    color: str | None = None  # known colour (ground truth); otherwise measured from the image

    @property
    def center(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2


@dataclass
class Check:
    kind: str          # "count", "min", "absent", "relation", "color"
    passed: bool | None  # None: not judged (e.g. a colour without the image)
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Verdict:
    passed: bool
    reason: str                     # every failing check's reason ("; "), or "ok: " and what was found
    checks: list[Check] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # at presence_conf, after merging
    rules: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "reason": self.reason, "counts": self.counts,
                "checks": [c.to_dict() for c in self.checks], "rules": self.rules}


def as_found(d: Any) -> Found:
    """A Found from a detection object, a dict with label/confidence/box, or a Found."""
    if isinstance(d, Found):
        return d
    get = d.get if isinstance(d, Mapping) else (lambda k, default=None: getattr(d, k, default))
    try:
        box = tuple(float(v) for v in get("box"))
        found = Found(str(get("label")), float(get("confidence")), box, get("color", None))
    except (KeyError, AttributeError, TypeError, ValueError) as e:
        raise ValueError(f"a detection needs label, confidence and a 4-number box; got {d!r}") from e
    if len(found.box) != 4:
        raise ValueError(f"a detection box has 4 numbers (x1, y1, x2, y2); got {found.box}")
    return found


def _intersection(a: Sequence[float], b: Sequence[float]) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _area(box: Sequence[float]) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    inter = _intersection(a, b)
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def nested(a: Sequence[float], b: Sequence[float]) -> float:
    """The share of the smaller of two boxes that lies inside the other (1: fully inside)."""
    smaller = min(_area(a), _area(b))
    return _intersection(a, b) / smaller if smaller > 0 else 0.0


def _one_object(f: Found, k: Found, rules: JudgeRules) -> bool:
    if f.label != k.label:
        return iou(f.box, k.box) >= rules.dedup_iou
    return rules.nest_cover is not None and nested(f.box, k.box) >= rules.nest_cover


def merge_detections(detections: Iterable[Any], rules: JudgeRules = DEFAULT_RULES) -> list[Found]:
    """Rule 1: keep detections at presence_conf; of two different-class boxes with IoU >=
    dedup_iou, or two same-class boxes one nest_cover inside the other, keep the more confident.
    Most confident first (ties: input order)."""
    kept: list[Found] = []
    candidates = [f for f in map(as_found, detections) if f.confidence >= rules.presence_conf]
    for f in sorted(candidates, key=lambda f: -f.confidence):  # sorted() is stable
        if not any(_one_object(f, k, rules) for k in kept):
            kept.append(f)
    return kept


def plural(label: str, n: int) -> str:
    return label if n == 1 else label + "s"


def _relation_holds(a: Found, b: Found, relation: str, margin_px: float) -> bool:
    (ax, ay), (bx, by) = a.center, b.center
    return {"left_of": bx - ax > margin_px, "right_of": ax - bx > margin_px,
            "above": by - ay > margin_px, "below": ay - by > margin_px}[relation]


def _where(a: Found, b: Found, margin_px: float) -> str:
    """Where a actually is relative to b, for the reason string."""
    words = [w for r, w in (("left_of", "left of"), ("right_of", "right of"), ("above", "above"), ("below", "below"))
             if _relation_holds(a, b, r, margin_px)]
    return " and ".join(words) if words else "level with"


def checked_dict_spec(d: Mapping):
    """A spec given as a dict, its shape checked: 'expect' maps labels (any a detector gives) to
    {count: N} or {min: N}; 'colors' maps labels to colour names; 'relations' are [a, relation, b].
    Other fields (an id, a category) are the caller's."""
    from evaluation.spec import PromptSpec
    from generation.sampling_options import whole

    expect = d.get("expect")
    if not isinstance(expect, Mapping):
        raise ValueError(f"spec: 'expect' must map labels to {{count: N}} or {{min: N}}, got {expect!r:.80}")
    clean = {}
    for label, rule in expect.items():
        kind, n = next(iter(rule.items())) if isinstance(rule, Mapping) and len(rule) == 1 else (None, None)
        if kind not in ("count", "min") or whole(n) is None or n < (1 if kind == "min" else 0):
            raise ValueError(f"spec: expect.{label} must be {{count: N}} (N >= 0) or {{min: N}} (N >= 1), got {rule!r}")
        clean[label] = {kind: whole(n)}
    colors = d.get("colors") or {}
    if not (isinstance(colors, Mapping) and all(isinstance(c, str) for c in colors.values())):
        raise ValueError(f"spec: 'colors' must map labels to colour names, got {colors!r:.80}")
    relations = []
    for k, rel in enumerate(d.get("relations") or []):
        if not (isinstance(rel, (list, tuple)) and len(rel) == 3 and rel[1] in RELATIONS):
            raise ValueError(f"spec: relations[{k}] must be [a, relation, b] with a relation of "
                             f"{', '.join(RELATIONS)}, got {rel!r}")
        relations.append(tuple(rel))
    return PromptSpec(str(d.get("prompt", "")), str(d.get("category", "")), clean, dict(colors), tuple(relations))


def judge(spec, detections: Iterable[Any], image_size: tuple[int, int],
          rules: JudgeRules = DEFAULT_RULES, image=None) -> Verdict:
    """Judge one image. `spec` has `expect` ({class: {"count": N} | {"min": N}}), and
    optional `relations` ([[a, rel, b], ...]) and `colors` ({class: colour}) — a
    `PromptSpec` or a plain dict (its shape checked: `checked_dict_spec`). `image_size` is (width,
    height); `image` (anything `datasets.images.rgb_uint8` reads: an RGB array, PIL image,
    tensor) is only needed for colour checks."""
    if isinstance(spec, Mapping):  # a misspelt field judged nothing and passed
        spec = checked_dict_spec(spec)
    expect, relations, colors = spec.expect or {}, spec.relations or [], spec.colors or {}
    try:
        width, height = (float(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (width, height), got {image_size!r}") from None
    found = merge_detections(detections, rules)
    by_label = {c: [f for f in found if f.label == c] for c in {f.label for f in found} | set(expect)}
    counts = {c: len(v) for c, v in sorted(by_label.items())}
    checks: list[Check] = []
    seen_ok: list[str] = []  # what a passing image showed, in words, for its reason
    too_few: set[str] = set()  # expected classes not found at all ("found 0" says it once)
    said: set[int] = set()  # failed checks on those classes that the reason leaves out, as said already

    for label, rule in expect.items():
        present = by_label[label]
        if "min" in rule:
            n = int(rule["min"])
            checks.append(Check("min", len(present) >= n, f"expected at least {n} {plural(label, n)}, found {len(present)}"))
            if not present:
                too_few.add(label)
            seen_ok.append(f"{len(present)} {plural(label, len(present))}")
        elif int(rule["count"]) == 0:
            best = f" (conf {present[0].confidence:.2f})" if present else ""
            checks.append(Check("absent", not present, f"expected no {label}, found {len(present)}{best}"))
            seen_ok.append(f"no {label}")
        else:
            n = int(rule["count"])
            strict = sum(f.confidence >= rules.count_conf for f in present)
            ok = strict == n
            if strict == len(present):
                reason = f"expected exactly {n} {plural(label, n)}, found {strict}"
            else:  # some only at presence level: say both numbers
                reason = (f"expected exactly {n} {plural(label, n)}, found {strict} at confidence "
                          f"{rules.count_conf:g}+ and {len(present)} at {rules.presence_conf:g}+")
            checks.append(Check("count", ok, reason))
            if not present:
                too_few.add(label)
            seen_ok.append(f"{n} {plural(label, n)}")

    margin_px = rules.position_margin * max(width, height)
    for a_label, relation, b_label in relations:
        text = relation.replace("_", " ")
        a_all, b_all = by_label.get(a_label, []), by_label.get(b_label, [])
        a = a_all[0] if a_all else None
        b = next((f for f in b_all if f is not a), None)
        if a is None or b is None:
            missing = a_label if a is None else b_label
            if missing in too_few:
                said.add(len(checks))
            checks.append(Check("relation", False, f"{a_label} {text} {b_label}: no {missing} found"))
            continue
        ok = _relation_holds(a, b, relation, margin_px)
        where = _where(a, b, margin_px)
        checks.append(Check("relation", ok, f"{a_label} is {where} {b_label}, expected {text}"))
        seen_ok.append(f"{a_label} {text} {b_label}")

    for label, color in colors.items():
        present = by_label.get(label, [])
        if not present:
            if label in too_few:
                said.add(len(checks))
            checks.append(Check("color", False, f"expected {color} {label}, found no {label}"))
            continue
        if image is None and any(f.color is None for f in present):
            checks.append(Check("color", None, f"{color} {label}: colour not judged (no image given)"))
            continue
        from datasets.images import rgb_uint8  # local: numpy work only when colours are asked
        from evaluation.colors import box_color

        if image is not None:  # a float [0, 1] array or a tensor was measured as near-black
            image = rgb_uint8(image)
        seen = [f.color or box_color(image, f.box, label, rules.color_distance) for f in present]
        ok = all(s == color for s in seen)
        wanted = next(iter(expect.get(label, {}).values()), 1)  # the prompt's number, not the found one
        reason = (f"expected {color} {plural(label, wanted)}, found "
                  + ", ".join(s or "unclear" for s in seen))
        checks.append(Check("color", ok, reason))
        seen_ok.append(f"{color} {plural(label, len(present))}")

    failed = [c for c in checks if c.passed is False]
    unjudged = [c.reason for c in checks if c.passed is None]
    if failed:  # every failure, so a wrong count is not hidden behind a stray box
        reason = "; ".join(c.reason for i, c in enumerate(checks) if c.passed is False and i not in said)
    else:
        reason = "ok: " + ", ".join(seen_ok + unjudged) if seen_ok or unjudged else "ok"
    return Verdict(passed=not failed, reason=reason,
                   checks=checks, counts=counts, rules=rules.to_dict())
