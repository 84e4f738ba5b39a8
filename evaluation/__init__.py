"""gendet evaluation: generate-then-detect (prompt suites, judge rules, runner, reports).

    from evaluation import JudgeDetectors, judge, parse_prompt
    eyes = JudgeDetectors.load("catdog=models/demo/catdog.pt,face=models/demo/face.pt")
    spec = parse_prompt("two black cats")
    verdict = judge(spec, eyes.detect([image])[0], image.size, eyes.rules, image=image)
"""

_WHERE = {"parse_prompt": "prompts", "judge": "judge", "JudgeRules": "judge", "JudgeDetectors": "detectors",
          "run_suite": "runner", "generate_checked": "checked", "load_suite": "suite",
          "suite_from_prompts": "suite"}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    # lazy: importing the package (for any submodule) loads none of these until one is asked for
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"evaluation.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'evaluation' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
