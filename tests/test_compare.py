"""evaluation.compare: pairing of two runs' images and the exact sign test, against brute force."""

import itertools
import json

import pytest

from evaluation.compare import compare, main, sign_test


def brute_force_p(gained: int, lost: int) -> float:
    """Share of all 2^n fair sign sequences whose split is at least as uneven as gained:lost."""
    n = gained + lost
    seqs = list(itertools.product((0, 1), repeat=n))
    return sum(abs(2 * sum(s) - n) >= abs(gained - lost) for s in seqs) / len(seqs)


@pytest.mark.parametrize("gained,lost", [(0, 0), (1, 0), (3, 3), (5, 1), (0, 7), (9, 3), (2, 10), (6, 7)])
def test_sign_test_equals_the_brute_force_enumeration(gained, lost):
    assert sign_test(gained, lost) == pytest.approx(brute_force_p(gained, lost), abs=1e-12)


def test_sign_test_known_values_and_large_n():
    assert sign_test(17, 10) == pytest.approx(0.2478, abs=1e-4)  # 2 * P(Bin(27, 1/2) <= 10)
    assert sign_test(5, 0) == pytest.approx(2 / 32)
    assert 0 < sign_test(700, 500) < 1e-7 and sign_test(600, 600) == 1.0  # no float overflow at n = 1200


def row(prompt, i, category, passed, seed=None):
    return {"prompt": prompt, "image_index": i, "seed": i if seed is None else seed, "category": category,
            "verdict": {"passed": passed}}


def write_run(folder, rows):
    folder.mkdir()
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_cli_counts_gained_and_lost_per_category(tmp_path, capsys):
    # cats: 4 images, first passes 1, second 3 (gains images 1 and 2, keeps 0); dogs: loses image 0
    first = [row("a cat", 0, "single", True), row("a cat", 1, "single", False), row("a cat", 2, "single", False),
             row("a cat", 3, "single", False), row("two dogs", 0, "counting", True),
             row("two dogs", 1, "counting", False), {**row("a ?", 0, "odd", False), "verdict": None}]
    second = [row("a cat", 2, "single", True), row("a cat", 0, "single", True), row("a cat", 1, "single", True),
              row("a cat", 3, "single", False), row("two dogs", 0, "counting", False),
              row("two dogs", 1, "counting", False)]  # order differs: pairing is by key
    a, b = write_run(tmp_path / "a", first), write_run(tmp_path / "b", second)
    assert main([str(a), str(b / "results.jsonl"), "--json-out", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert "| single | 0.250 | 0.750 | 2 | 0 | 0.5 | 4 |" in out
    assert "| counting | 0.500 | 0.000 | 0 | 1 | 1 | 2 |" in out
    assert "| **overall** | 0.333 | 0.500 | 2 | 1 | 1 | 6 |" in out
    saved = json.loads((tmp_path / "c.json").read_text())
    assert saved["overall"] == {"n": 6, "passed_a": 2, "passed_b": 3, "gained": 2, "lost": 1, "p": 1.0}
    assert "warning" not in capsys.readouterr().err  # one judge (rows without rules: unknown on both sides)
    # --json-out into a folder not there yet is made; one that cannot be is a line, not a traceback
    assert main([str(a), str(b), "--json-out", str(tmp_path / "new" / "c.json")]) == 0
    assert json.loads((tmp_path / "new" / "c.json").read_text()) == saved
    (tmp_path / "file").write_text("x")
    assert main([str(a), str(b), "--json-out", str(tmp_path / "file" / "c.json")]) == 2
    assert capsys.readouterr().err.startswith(f"error: --json-out {tmp_path / 'file' / 'c.json'}: ")


def test_runs_judged_by_different_rules_are_compared_with_a_warning(tmp_path, capsys):
    """A judge-1 run against a judge-2 run mixes the judge's change into the model's: said, not refused
    (comparing two judges on the same images is a use of its own)."""
    def judged(version):
        return [{**r, "verdict": {**r["verdict"], "rules": {"version": version}}}
                for r in (row("a cat", 0, "single", True), row("a cat", 1, "single", False))]

    a, b = write_run(tmp_path / "a", judged("judge-1")), write_run(tmp_path / "b", judged("judge-2"))
    assert main([str(a), str(b)]) == 0
    assert "warning: the runs were judged by different rules (judge-1; judge-2)" in capsys.readouterr().err
    assert main([str(b), str(write_run(tmp_path / "c", judged("judge-2")))]) == 0
    assert "warning" not in capsys.readouterr().err


def test_mismatched_runs_and_bad_files_are_named(tmp_path, capsys):
    a = write_run(tmp_path / "a", [row("a cat", 0, "single", True), row("a cat", 1, "single", True)])
    b = write_run(tmp_path / "b", [row("a cat", 0, "single", True), row("a cat", 1, "single", True, seed=7)])
    assert main([str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert "1 only in the first (e.g. [('a cat', 1, 1)])" in err and "1 only in the second" in err
    assert "made before 2026-12-05 drew image k with seed + k" in err  # the old seed rule's hint
    assert main([str(a), str(tmp_path / "nope")]) == 2
    assert "nope: no such results file (give an evaluation.run --out folder)" in capsys.readouterr().err
    c = write_run(tmp_path / "c", [{"prompt": "a cat", "verdict": {"passed": True}}])
    assert main([str(a), str(c)]) == 2
    assert "c/results.jsonl: row 1 has no 'image_index' field" in capsys.readouterr().err
    # a prompt a newer parser files otherwise: compared under the second run's category, and said
    result = compare({("a cat", 0, 0): ("single", True)}, {("a cat", 0, 0): ("counting", False)})
    assert result["refiled"] == {"a cat": ["single", "counting"]} and list(result["categories"]) == ["counting"]
    assert result["overall"]["lost"] == 1
    d = write_run(tmp_path / "d", [row("a cat", 0, "counting", True), row("a cat", 1, "counting", True)])
    assert main([str(a), str(d)]) == 0
    assert "warning: 1 prompt filed under other categories in the two runs (e.g. 'a cat': single, then counting)" \
        in capsys.readouterr().err


def test_runs_joined_by_commas_are_pooled_and_an_image_in_two_is_refused(tmp_path, capsys):
    # two seed blocks: block 0 gains image 0, block 1 loses image 4; pooled, one of each over 4 pairs
    a0 = write_run(tmp_path / "a0", [row("a cat", 0, "single", False), row("a cat", 1, "single", True)])
    a1 = write_run(tmp_path / "a1", [row("a cat", 0, "single", True, seed=4), row("a cat", 1, "single", True, seed=5)])
    b0 = write_run(tmp_path / "b0", [row("a cat", 0, "single", True), row("a cat", 1, "single", True)])
    b1 = write_run(tmp_path / "b1", [row("a cat", 0, "single", False, seed=4), row("a cat", 1, "single", True, seed=5)])
    assert main([f"{a0},{a1}", f"{b1},{b0}", "--json-out", str(tmp_path / "c.json")]) == 0
    assert "| **overall** | 0.750 | 0.750 | 1 | 1 | 1 | 4 |" in capsys.readouterr().out
    saved = json.loads((tmp_path / "c.json").read_text())
    assert saved["first"] == [str(a0 / "results.jsonl"), str(a1 / "results.jsonl")]
    assert (saved["overall"]["gained"], saved["overall"]["lost"]) == (1, 1)
    # the old seed rule's overlapping blocks (seed 1 reused images of seed 0) would count twice
    assert main([f"{a0},{a0}", f"{b0},{b0}"]) == 2
    assert "both hold image ('a cat', 0, 0): runs pooled must hold different images" in capsys.readouterr().err
    # a run folder whose own name holds a comma is one run, not two
    comma = write_run(tmp_path / "seed 0,4 images", [row("a cat", 0, "single", True), row("a cat", 1, "single", True)])
    assert main([str(a0), str(comma)]) == 0
    assert "| **overall** | 0.500 | 1.000 | 1 | 0 | 1 | 2 |" in capsys.readouterr().out
