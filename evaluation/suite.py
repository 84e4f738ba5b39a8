"""Prompt suites: YAML files of `PromptSpec`s (schema in evaluation/spec.py and the suites folder).

    suite = load_suite("default")            # evaluation/suites/default.yaml
    suite = load_suite("my_suite.yaml")      # any path
    suite = suite_from_prompts(["two black cats", "a dog to the left of a face"])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from evaluation.spec import PromptSpec, SpecError, spec_from_dict

SUITES_DIR = Path(__file__).parent / "suites"


@dataclass(frozen=True)
class Suite:
    name: str
    prompts: tuple[PromptSpec, ...]
    path: Path

    def categories(self) -> list[str]:
        return sorted({p.category for p in self.prompts})


def builtin_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def resolve_suite(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if path.is_dir():
            raise FileNotFoundError(f"suite {path} is a folder; give a suite's YAML file")
        if not path.is_file():
            raise FileNotFoundError(f"suite file {path} does not exist")
        return path
    builtin = SUITES_DIR / f"{name_or_path}.yaml"
    if not builtin.is_file():
        raise FileNotFoundError(f"no suite {str(name_or_path)!r}: not a file, and the built-in suites are "
                                f"{', '.join(builtin_suites())}")
    return builtin


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load, but a key given twice in one mapping is an error (PyYAML keeps the last silently:
    `cat: {count: 0}` then `cat: {min: 1}` would expect a cat)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):  # `? [a, b]`: unhashable, a TypeError in PyYAML
                kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
                raise yaml.constructor.ConstructorError(None, None, f"a key must be a name, got a {kind}",
                                                        key_node.start_mark)
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"{key!r} is given twice in one mapping",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def prompt_key(prompt: str) -> str:
    """What the text encoders read of a prompt (case and spacing do not reach them): two prompts
    with one key draw the same images, so a suite holding both would count them twice."""
    return " ".join(prompt.lower().split())


def _one_line_yaml_error(path: Path, e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    return f"{where}: not valid YAML: {getattr(e, 'problem', None) or e}"


def load_suite(name_or_path: str | Path) -> Suite:
    """Load and validate a suite; a SpecError names the file and the prompt (counted from 1)."""
    path = resolve_suite(name_or_path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except yaml.YAMLError as e:
        raise SpecError(_one_line_yaml_error(path, e)) from None
    if not isinstance(data, dict) or not isinstance(data.get("prompts"), list) or not data["prompts"]:
        raise SpecError(f"{path}: a suite is a mapping with 'name' and a non-empty 'prompts' list")
    unknown = sorted(set(data) - {"name", "prompts"}, key=str)
    if unknown:
        raise SpecError(f"{path}: unknown field(s) {', '.join(map(str, unknown))} (a suite has 'name' and 'prompts')")
    name = data.get("name") or path.stem
    if not isinstance(name, str):
        raise SpecError(f"{path}: 'name' must be a string, got {name!r}")
    specs = tuple(spec_from_dict(d, f"{path}, prompt {i}") for i, d in enumerate(data["prompts"], 1))
    seen: dict[str, int] = {}
    for i, s in enumerate(specs, 1):
        if prompt_key(s.prompt) in seen:
            raise SpecError(f"{path}, prompt {i}: {s.prompt!r} repeats prompt {seen[prompt_key(s.prompt)]} "
                            "(case and spacing do not reach the model)")
        seen[prompt_key(s.prompt)] = i
    return Suite(name, specs, path)


def suite_from_prompts(prompts: list[str], name: str = "prompts") -> Suite:
    """A suite of prompts in the judge's language, each judged as `parse_prompt` reads it (its
    category too): for evaluating a few prompts without writing a YAML file."""
    from evaluation.prompts import ParseError, parse_prompt

    if isinstance(prompts, str):  # iterated, it was one prompt a letter: "prompt 1: cannot judge 't'"
        raise SpecError(f"expected a list of prompts, got one string {prompts!r:.60}: give [{prompts!r:.60}]")
    specs = []
    for i, prompt in enumerate(prompts, 1):  # counted as a person counts them: the first is prompt 1
        try:
            specs.append(parse_prompt(prompt))
        except ParseError as e:
            raise SpecError(f"prompt {i}: {e}") from None
        if prompt_key(specs[-1].prompt) in [prompt_key(s.prompt) for s in specs[:-1]]:
            raise SpecError(f"prompt {i}: {specs[-1].prompt!r} is given twice (case and spacing do not reach the model)")
    if not specs:
        raise SpecError("no prompts given")
    return Suite(name, tuple(specs), Path(f"<{len(specs)} prompts>"))


def dump_suite(name: str, specs, path: str | Path) -> None:
    """Write specs as suite YAML (the same schema load_suite reads)."""
    data = {"name": name, "prompts": [s.to_dict() for s in specs]}
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120))
