"""The judge's eyes: the catdog and face detectors run together on one in-memory batch.

    eyes = JudgeDetectors.load("catdog=models/demo/catdog.pt,face=models/demo/face.pt")
    per_image = eyes.detect(images)        # images: float tensor [B,3,H,W] in [0,1], PIL or numpy
    per_image[0] -> [{"label": "cat", "confidence": 0.91, "box": [x1, y1, x2, y2], "detector": "catdog"}]

Detections are returned down to the judge's presence threshold; the judge
applies its own thresholds and cross-detector de-duplication.
"""

from __future__ import annotations

import hashlib
import re
import string
from pathlib import Path
from typing import Any, Mapping

import gendet_env
from evaluation.judge import DEFAULT_RULES, JudgeRules

TASKS = ("catdog", "face")
TASK_CLASSES = {"catdog": ("cat", "dog"), "face": ("face",)}


def file_sha256(path: str | Path, length: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]


def folder_sha256(folder: str | Path, length: int = 16) -> str:
    """One hash of every file in a model folder, names included: a generator whose decoder or text
    encoder changed is another model, though its transformer's weights are the same."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.name.endswith(".tmp")):
        h.update(f"{path.relative_to(folder).as_posix()}\0{file_sha256(path, 64)}\n".encode())
    return h.hexdigest()[:length]


def parse_detector_spec(spec: str) -> dict[str, Path]:
    """"catdog=PATH,face=PATH" -> {"catdog": Path, "face": Path}; either may be left out. Split only
    at a comma before the next "catdog=" or "face=", so a path may hold commas (and "=") of its own;
    stray commas around the parts are dropped."""
    out = {}
    tasks = "|".join(map(re.escape, TASKS))
    for part in filter(None, (p.strip(string.whitespace + ",") for p in re.split(rf",(?=\s*(?:{tasks})\s*=)", spec))):
        task, sep, path = part.partition("=")
        task, path = task.strip(), path.strip()
        if not sep or task not in TASKS or not path:
            raise ValueError(f"bad detector spec {part!r}: use catdog=PATH and/or face=PATH, comma-separated")
        if task in out:
            raise ValueError(f"detector {task!r} given twice in {spec!r}")
        out[task] = gendet_env.expand_user(path)
    if not out:
        raise ValueError("no detectors given: use catdog=PATH and/or face=PATH")
    return out


class JudgeDetectors:
    def __init__(self, detectors: Mapping[str, Any], paths: Mapping[str, Path] | None = None,
                 rules: JudgeRules = DEFAULT_RULES):
        self.detectors = dict(detectors)
        self.paths = dict(paths or {})
        self.rules = rules

    @classmethod
    def load(cls, spec: str | Mapping[str, str | Path], device=None, rules: JudgeRules = DEFAULT_RULES):
        from detection.detector import Detector

        paths = parse_detector_spec(spec) if isinstance(spec, str) else {k: gendet_env.expand_user(v) for k, v in spec.items()}
        for task, path in paths.items():
            if task not in TASKS:
                raise ValueError(f"unknown detector task {task!r}: use {' and/or '.join(TASKS)}")
            if not path.is_file():
                other = re.search(r",\s*(\w+)\s*=", str(path))  # "catdog=a.pt,cat=b.pt": a misspelt task
                comma = (f" ({other.group(1)!r} is not a detector task: give catdog=PATH and/or face=PATH)" if other
                         else " (the comma is read as part of the path: give the detectors as catdog=PATH,face=PATH)"
                         if "," in str(path) else "")
                raise FileNotFoundError(f"{task} detector {path} does not exist{comma}")
        found = {t: Detector.load(p, device=device) for t, p in paths.items()}
        for task, det in found.items():  # a face detector given as catdog judged every cat "found 0"
            if not set(det.names) & set(TASK_CLASSES[task]):
                raise ValueError(f"{paths[task]}: given as the {task} detector, but it finds "
                                 f"{', '.join(det.names)}, not {' or '.join(TASK_CLASSES[task])}")
        return cls(found, paths, rules)

    @property
    def classes(self) -> set[str]:
        return {n for d in self.detectors.values() for n in d.names}

    def warn_unseen(self) -> None:
        """A line on stderr when no detector finds some class: prompts naming it are judged as if
        none were there ("found 0 faces"), so their verdicts on it are not measurements."""
        import sys

        from evaluation.judge import CLASSES

        unseen = sorted(set(CLASSES) - self.classes)
        if unseen:
            print(f"warning: no detector finds {', '.join(unseen)}: verdicts on {'it' if len(unseen) == 1 else 'them'}"
                  f" read 'found 0' (give {unseen[0]}=PATH in --detectors)", file=sys.stderr)

    def info(self) -> dict:
        """Paths and content hashes, recorded in every summary."""
        return {t: {"path": str(p), "sha256": file_sha256(p)} for t, p in self.paths.items()}

    def detect(self, images) -> list[list[dict]]:
        """Per image, every detection of every detector at >= the presence threshold."""
        per_image: list[list[dict]] | None = None
        for task, det in self.detectors.items():
            results = det.detect(images, conf=self.rules.presence_conf)
            if per_image is None:
                per_image = [[] for _ in results]
            for found, dets in zip(per_image, results):
                found.extend({"label": d.label, "confidence": round(float(d.confidence), 4),
                              "box": [round(float(v), 2) for v in d.box], "detector": task} for d in dets)
        return per_image or []
