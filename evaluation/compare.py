"""Compare two evaluation runs image by image: which images newly pass, which no longer do.

    python -m evaluation.compare runs/eval_old runs/eval_new
    python -m evaluation.compare runs/eval_old runs/eval_new --json-out runs/compare.json
    python -m evaluation.compare runs/old_s0,runs/old_s1 runs/new_s0,runs/new_s1   # pooled seeds

Rows are paired by (prompt, image index, seed): with the same suite and seed, both runs
drew from the same noise, so a pair differs only by what changed between them (the
model, the settings). Per category and overall it prints both accuracies, the images
gained (fail -> pass) and lost (pass -> fail), and the exact two-sided sign test on those
discordant pairs (McNemar's exact test): the chance of a split at least that uneven if
neither run were better. Two bootstrap intervals that overlap say little; this says more
from the same images. Runs joined by commas are pooled (seed blocks of one comparison): they
must hold different images, which runs at different seeds do since the seed rule of 2026-12-05.
"""

from __future__ import annotations

import argparse
import json
import sys
from math import comb
from pathlib import Path

from evaluation.runner import read_rows


def sign_test(gained: int, lost: int) -> float:
    """Exact two-sided p of `gained` vs `lost` under Binomial(gained + lost, 1/2)."""
    n = gained + lost
    if n == 0:
        return 1.0
    tail = sum(comb(n, k) for k in range(min(gained, lost) + 1))
    return min(1.0, 2 * tail / 2**n)  # int / int: exact enough for any n (no float overflow)


def results_path(run: str | Path) -> Path:
    """A run folder (its results.jsonl) or the results file itself."""
    path = Path(run)
    path = path / "results.jsonl" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such results file (give an evaluation.run --out folder)")
    return path


def split_runs(arg: str) -> list[str]:
    """A comma-joined list of runs; a run whose own path holds a comma (it exists whole) is one run."""
    return [arg] if Path(arg).exists() else [run for run in arg.split(",") if run]


def outcomes(path: Path) -> dict[tuple, tuple[str, bool]]:
    """(prompt, image_index, seed) -> (category, passed), over judged rows."""
    out = {}
    for n, row in enumerate(read_rows(path), 1):
        if row.get("verdict") is None:
            continue  # a prompt the judge could not read: not an outcome
        try:
            key = (row["prompt"], row["image_index"], row["seed"])
            out[key] = (row["category"], bool(row["verdict"]["passed"]))
        except KeyError as err:
            raise ValueError(f"{path}: row {n} has no {err.args[0]!r} field (not an evaluation.run results file)") from None
    if not out:
        raise ValueError(f"{path}: no judged rows")
    return out


def judge_versions(paths: list[Path]) -> set[str]:
    """The judge versions (JudgeRules.version) the rows of these runs were judged by."""
    return {row["verdict"].get("rules", {}).get("version", "?") for path in paths for row in read_rows(path)
            if row.get("verdict") is not None}


def pooled_outcomes(paths: list[Path]) -> dict[tuple, tuple[str, bool]]:
    """outcomes() of several runs together; an image in two of them is an error (pooling it would
    count it twice)."""
    out: dict[tuple, tuple[str, bool]] = {}
    where: dict[tuple, Path] = {}
    for path in paths:
        for key, value in outcomes(path).items():
            if key in out:
                raise ValueError(f"{where[key]} and {path} both hold image {key}: runs pooled must hold different "
                                 "images (runs at different seeds made since 2026-12-05 do)")
            out[key], where[key] = value, path
    return out


def compare(a: dict[tuple, tuple[str, bool]], b: dict[tuple, tuple[str, bool]]) -> dict:
    """{"overall": block, "categories": {name: block}}; a block counts n pairs, passes in a
    and b, gained, lost and the sign test's p. Both runs must hold the same images. A prompt filed
    under another category in b (a newer parser's reading) is counted under b's, and listed under
    "refiled"."""
    if a.keys() != b.keys():
        only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
        raise ValueError(f"the runs hold different images: {len(only_a)} only in the first (e.g. {only_a[:2]}), "
                         f"{len(only_b)} only in the second (e.g. {only_b[:2]}); compare runs of the same suite, "
                         "images per prompt and seed (a run at a seed above 0 made before 2026-12-05 drew image k "
                         "with seed + k, so its images are not a newer run's at that seed)")
    pairs: dict[str, list[tuple[bool, bool]]] = {}
    refiled = {}  # prompts a newer parser files otherwise ("a white cat and a black cat": counting)
    for key, (category, passed) in a.items():
        if b[key][0] != category:
            refiled[key[0]] = (category, b[key][0])
        pairs.setdefault(b[key][0], []).append((passed, b[key][1]))

    def block(rows: list[tuple[bool, bool]]) -> dict:
        gained = sum(1 for x, y in rows if y and not x)
        lost = sum(1 for x, y in rows if x and not y)
        return {"n": len(rows), "passed_a": sum(x for x, _ in rows), "passed_b": sum(y for _, y in rows),
                "gained": gained, "lost": lost, "p": sign_test(gained, lost)}

    return {"overall": block([p for rows in pairs.values() for p in rows]),
            "categories": {c: block(rows) for c, rows in sorted(pairs.items())},
            **({"refiled": {p: list(c) for p, c in sorted(refiled.items())}} if refiled else {})}


def markdown_table(result: dict) -> str:
    lines = ["| category | first | second | gained | lost | sign test p | images |", "|---|---|---|---|---|---|---|"]
    for name, b in [*result["categories"].items(), ("**overall**", result["overall"])]:
        lines.append(f"| {name} | {b['passed_a'] / b['n']:.3f} | {b['passed_b'] / b['n']:.3f} | {b['gained']} | "
                     f"{b['lost']} | {b['p']:.3g} | {b['n']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m evaluation.compare", description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("first", help="evaluation.run --out folder (or its results.jsonl): the baseline; several "
                                  "joined by commas are pooled")
    ap.add_argument("second", help="the run to compare with it (or several, joined by commas)")
    ap.add_argument("--json-out", default=None, help="also write the comparison as JSON")
    args = ap.parse_args(argv)
    try:
        paths = [[results_path(run) for run in split_runs(arg)] for arg in (args.first, args.second)]
        result = compare(pooled_outcomes(paths[0]), pooled_outcomes(paths[1]))
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    names = [", ".join(map(str, side)) for side in paths]
    judges = [", ".join(sorted(judge_versions(side))) for side in paths]
    if judges[0] != judges[1]:  # the judge changed too: a gain or loss may be its, not the model's
        print(f"warning: the runs were judged by different rules ({judges[0]}; {judges[1]}): judge one again "
              "by the other's rules to compare the images alone (evaluation.run --images-from RUN --judge ...)",
              file=sys.stderr)
    if result.get("refiled"):  # the same images, counted under the second run's categories
        (prompt, (was, now)), n = next(iter(result["refiled"].items())), len(result["refiled"])
        print(f"warning: {n} prompt{'s' * (n != 1)} filed under other categories in the two runs (e.g. {prompt!r}: "
              f"{was}, then {now}); compared under the second run's", file=sys.stderr)
    print(f"first: {names[0]}\nsecond: {names[1]}\n")
    print(markdown_table(result))
    if args.json_out:
        # one run stays a string, as before; pooled runs are a list
        side = [str(x[0]) if len(x) == 1 else list(map(str, x)) for x in paths]
        out = Path(args.json_out)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"first": side[0], "second": side[1], **result}, indent=1) + "\n")
        except OSError as err:
            print(f"error: --json-out {out}: {err.strerror or err}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
