"""models.restore_work: the committed card gives back the records of its build, so that the model
card written from them is the committed one again (less the evaluation and speed, which a build
measures again for its new generator)."""

import json
import re
import shutil

import gendet_env
from models.model_card import write_card
from models.restore_work import main, restore

ROOT = gendet_env.ROOT
CARD = ROOT / "models" / "demo" / "README.md"


def _without_generator_measurements(card: str) -> str:
    """The card less what belongs to one generator: the evaluation (table, blocks, defaults) and speed."""
    card = re.sub(r"\nDefault suite, .*?(?=\n## Commands)", "", card, flags=re.S)
    return card.replace("Hardware: no GPU; 2 CPU cores (x86_64).\n\n", "")


def test_the_restored_records_write_the_committed_card_again(tmp_path):
    work, bundle = tmp_path / "runs" / "demo_cpu", tmp_path / "bundle"
    written = restore(CARD, work, ROOT / "models" / "demo")
    assert {"scenes/meta.json", "times.json", "build.log", "tokenizer_ceiling.json", "NOTES.md"} <= set(written)
    # what the build would copy in itself: the committed VQ-VAE's numbers
    vq = json.loads((ROOT / "models" / "tokenizer128" / "metrics.json").read_text())
    (work / "vqvae").mkdir()
    (work / "vqvae" / "metrics.json").write_text(json.dumps({**vq, "restored_from": "trained beforehand: "
                                                             "models/tokenizer128/README.md"}))
    shutil.copytree(ROOT / "models" / "demo", bundle)
    times = json.loads((work / "times.json").read_text())
    assert "evaluation" not in times and times["scenes"] > 0
    committed = CARD.read_text()
    # the old generator's evaluation and speed times, for the card's table and total
    times |= {k: float(v) for k, v in re.findall(r"(?m)^\| (evaluation|speed) \| (\d+) \|$", committed)}
    card = write_card(work, bundle, "cpu", times).read_text().replace(str(work), "runs/demo_cpu")
    assert "Default suite" in committed and "Default suite" not in card
    assert card == _without_generator_measurements(committed)
    # the configs carry the work folder's own paths, as the build writes them
    assert f"data: {work}/generator_scenes\n" in (work / "t2i.yaml").read_text()


def test_the_cli_refuses_to_overwrite_records_and_names_a_missing_card(tmp_path, capsys):
    work = tmp_path / "demo_cpu"
    assert main(["--work", str(work)]) == 0
    assert main(["--work", str(work)]) == 2 and "--force" in capsys.readouterr().err
    assert main(["--work", str(work), "--force"]) == 0
    assert main(["--card", str(tmp_path / "nope.md"), "--work", str(tmp_path / "w")]) == 2
    assert "nope.md" in capsys.readouterr().err
    (tmp_path / "bad.md").write_text("# not a card\n")
    assert main(["--card", str(tmp_path / "bad.md"), "--work", str(tmp_path / "w")]) == 2
    assert "Data line" in capsys.readouterr().err
