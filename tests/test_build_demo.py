"""The demo-bundle recipe end to end with the `smoke` profile (tiny everything), built the way a lent
GPU builds it (models/GPU.md): `GENDET_DRY=1 bash models/gpu_call.sh all` and `... detectors` run the same
steps here on CPU, each on a machine of its own; what comes back fits the device tool's $OUT limits,
gpu_unpack.sh puts it where models.build_demo continues, and the build finishes here without training
those stages again. Then the card, and resumption."""

import contextlib
import io
import json
import re
import os
import subprocess
from types import SimpleNamespace

import pytest
import torch

import gendet_env
from models.build_demo import MORE_ROUNDS, STAGES, build
from models.model_card import ROUND_LABELS

ROOT = gendet_env.ROOT


def gpu_call(part: str, out, runs) -> None:
    out.mkdir()
    env = {**os.environ, "GENDET_DRY": "1", "OUT": str(out), "GENDET_RUNS": str(runs)}
    call = subprocess.run(["bash", "models/gpu_call.sh", part], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert call.returncode == 0, call.stdout[-2000:] + call.stderr[-2000:]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One smoke build for the tests below (it takes minutes): two calls, unpacked, finished here."""
    tmp = tmp_path_factory.mktemp("smoke")
    runs, work = tmp / "runs", tmp / "runs" / "demo_smoke"
    there = {}
    for part in ("all", "detectors"):  # each call on a fresh machine, which keeps its files
        gpu_call(part, tmp / f"out_{part}", runs)
        there[part] = tmp / f"there_{part}"
        work.rename(there[part])
    for part in ("all", "detectors"):
        env = {**os.environ, "GENDET_RUNS": str(runs)}
        unpack = subprocess.run(["bash", "models/gpu_unpack.sh", str(tmp / f"out_{part}"), "smoke"], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=120)
        assert unpack.returncode == 0, unpack.stderr
    unpacked = json.loads((work / "times.json").read_text())
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        bundle = build("smoke", "cpu", work, tmp / "bundle")
    return SimpleNamespace(tmp=tmp, work=work, bundle=bundle, there=there, unpacked=unpacked,
                           printed=printed.getvalue(), times=json.loads((work / "times.json").read_text()))


@pytest.mark.slow
def test_the_gpu_calls_stop_where_asked_and_bring_back_within_the_out_limits(smoke):
    out, out_det = smoke.tmp / "out_all", smoke.tmp / "out_detectors"
    assert sorted(p.name for p in out.iterdir()) == ["build.log", "generator.tar.aa", "gpu.txt"]
    assert sorted(p.name for p in out_det.iterdir()) == ["build_detectors.log", "detectors.tar.aa", "gpu.txt"]
    for f in [*out.iterdir(), *out_det.iterdir()]:  # the device tool's limits
        assert f.stat().st_size < 16 * 2**20, f
    # `all` is --until generator: the first generator stage, no later round, no detector, no bundle
    there = smoke.there["all"]
    assert (there / "t2i" / "pipeline" / "pipeline.json").is_file()
    assert not any((there / name).exists() for name in ("t2i_more", "catdog", "bundle"))
    assert "--stop-by" in (out / "build.log").read_text()  # it trains to the call's end, whatever the speed
    # `detectors` is --only scenes,catdog,face: the generator's inputs need not exist
    there = smoke.there["detectors"]
    assert (there / "face" / "best.pt").is_file() and not (there / "vqvae").exists()
    assert (out_det / "build_detectors.log").read_text().count('"images_per_s"') == 4  # batch 1 and 32, both
    assert set(smoke.unpacked) == {"scenes", "generator_scenes", "vqvae", "generator", "catdog", "face"}
    for part in ("t2i/pipeline/pipeline.json", "vqvae/metrics.json", "catdog/best.pt", "face/speed.json"):
        assert (smoke.work / part).is_file(), part
    for stage in ("vqvae", "generator", "catdog", "face"):  # trained on the "GPU": not again here
        assert f"[{stage}] done (" in smoke.printed, stage
    assert "[scenes] done (" not in smoke.printed  # the scenes did not come back: drawn again here
    card = (smoke.bundle / "README.md").read_text()
    assert card.count("inference (`Detector.detect`") == 2 and "Training hardware:" in card
    # the commands that ran there are on the card, in an order that rebuilds: the scenes before their readers
    order = [card.index(f"python -m {m}") for m in ("datasets.scenes", "generation.train_vqvae",
                                                    "generation.train --config", "detection.train --task catdog",
                                                    "evaluation.run")]
    assert order == sorted(order), order


@pytest.mark.slow
def test_smoke_build_assembles_a_bundle_with_a_card(smoke):
    work, bundle = smoke.work, smoke.bundle
    for name in ("generator/pipeline.json", "catdog.pt", "face.pt", "README.md", "judge_validation.json"):
        assert (bundle / name).exists(), name
    card = (bundle / "README.md").read_text()
    assert "VQ-VAE: val PSNR" in card and "catdog detector" in card and "| **overall** |" in card
    assert "**Placeholders.** The smoke profile is a dry run" in card  # not a bundle to use
    assert "Tokenizer ceiling" in card and "| single_object |" in card
    # the smoke profile, as the cpu one, gives the generator the scenes on plain backgrounds only
    assert "drawn on flat and gradient backgrounds only" in card and "on the generator's scenes val" in card
    gen_data = json.loads((work / "generator_scenes" / "meta.json").read_text())
    assert gen_data["backgrounds"] == ["flat", "gradient"] and gen_data["n"] == 40 and gen_data["min_object"] == 0.375
    assert "every object at least 0.375 of the image side (`--min-object`)" in card
    assert f"--data {work / 'generator_scenes'} " in (work / "build.log").read_text()
    assert "Judge agreement" in card and "Sampling speed" in card and "images/s) on CPU" in card
    assert "python -m generation.train --config" in card and "python -m detection.train --task face" in card
    assert card.count("python -m evaluation.validate_judge") == 2 and "--through-vqvae" in card
    assert card.count("python -m datasets.scenes") == 6 and card.count("--backgrounds plain") == 5
    # rounds 4, 5 and 7 learn a larger set of the generator's scenes (another seed), listed on the card
    more = json.loads((work / "more_scenes" / "meta.json").read_text())
    assert (more["n"], more["seed"], more["backgrounds"], more["min_object"]) == (48, 1, ["flat", "gradient"], 0.375)
    for out in ("t2i_more3", "t2i_more4", "t2i_more6"):
        assert f"data: {work / 'more_scenes'}\n" in (work / f"{out}.yaml").read_text()
    assert "the generator's rounds 4, 5 and 7 learn 48 more of those scenes (seed 1: train 43, val 5; `more_scenes`)" \
        in card
    assert f"data: {work / 'more_scenes2'}\n" in (work / "t2i_more7.yaml").read_text()
    assert "the generator's round 8 learns 40 more of those scenes (seed 4: " in card
    assert f"data: {work / 'more_scenes3'}\n" in (work / "t2i_more8.yaml").read_text()
    assert "the generator's round 9 learns 40 more of those scenes (seed 5: " in card
    assert f"data: {work / 'more_scenes4'}\n" in (work / "t2i_more9.yaml").read_text()
    assert "the generator's round 10 learns 40 more of those scenes (seed 6: " in card
    from safetensors.torch import load_file

    weights = load_file(str(bundle / "generator" / "transformer" / "model.safetensors"))
    assert {v.dtype for v in weights.values()} <= {torch.float16, torch.int64}  # the profile stores float16
    summary = json.loads((work / "eval" / "summary.json").read_text())
    assert set(summary["judge_validation"]) >= {"overall", "single_object"}  # printed next to the results
    times = json.loads((work / "times.json").read_text())
    assert set(times) == set(STAGES)
    # the bundle's generator is the last round's, each round trained from the one before (init), in float16
    rounds = ["t2i", *MORE_ROUNDS.values()]
    stage = {name: load_file(str(work / name / "pipeline" / "transformer" / "model.safetensors"))
             for name in rounds}
    assert all(torch.equal(weights[k], v.half() if v.is_floating_point() else v) for k, v in stage[rounds[-1]].items())
    for before, after in zip(rounds, rounds[1:]):
        assert any(not torch.equal(stage[after][k], stage[before][k]) for k in stage[before])
        config = (work / f"{after}.yaml").read_text()
        assert "init: " + str(work / before / "pipeline") in config
    # the sixth round grows the transformer (1 block to 2 in this profile): new blocks, the old ones kept
    assert "grow:\n  depth: 2\n" in (work / "t2i_more5.yaml").read_text()
    assert set(stage["t2i_more4"]) < set(stage["t2i_more5"]) and any("blocks.1." in k for k in stage["t2i_more5"])
    assert set(stage["t2i_more6"]) == set(stage["t2i_more5"])  # a round after it trains the grown model
    # and the tenth grows it again (2 blocks to 3 here)
    assert "grow:\n  depth: 3\n" in (work / "t2i_more9.yaml").read_text()
    assert set(stage["t2i_more8"]) < set(stage["t2i_more9"]) and any("blocks.2." in k for k in stage["t2i_more9"])
    for name, out in MORE_ROUNDS.items():
        assert f"{ROUND_LABELS[name]} (`{out}.yaml`" in card
    assert "Then trained further from its EMA weights (`t2i_more.yaml`" in card
    assert card.count("python -m generation.train --config") == len(rounds)  # every generator stage's command
    assert "generation.train --config" in smoke.printed  # the later rounds trained here


@pytest.mark.slow
def test_a_finished_build_reruns_nothing_and_a_redone_stage_is_timed_afresh(smoke, capsys, monkeypatch):
    build("smoke", "cpu", smoke.work, smoke.bundle)  # everything done: nothing reruns
    out = capsys.readouterr().out
    assert out.count("] done (") == len(STAGES) and "$ " not in out
    import models.build_demo as recipe

    real_run = recipe.run
    monkeypatch.setattr(recipe, "run", lambda cmd, log: real_run(cmd, log) * 0 + 1234.0)
    (smoke.work / "speed.json").unlink()
    build("smoke", "cpu", smoke.work, smoke.bundle)
    again = json.loads((smoke.work / "times.json").read_text())
    assert again == {**smoke.times, "speed": 1234.0}


def test_card_lists_detector_speed_where_it_was_measured(tmp_path):
    from models.model_card import write_card

    work, bundle = tmp_path / "work", tmp_path / "bundle"
    (work / "catdog").mkdir(parents=True)
    bundle.mkdir()
    rows = [{"batch": b, "images_per_s": r, "imgsz": 128, "gpu": "NVIDIA H200", "cpu": "x86_64"}
            for b, r in ((1, 412.4), (32, 9876.5))]
    (work / "catdog" / "speed.json").write_text(json.dumps(rows))
    card = write_card(work, bundle, "gpu", {"catdog": 60.0}).read_text()
    assert "inference (`Detector.detect`, imgsz 128) on NVIDIA H200: batch 1 412 images/s, batch 32 9876 images/s" \
        in card
    assert card.count("inference (`Detector.detect`") == 1  # face has no speed.json: no line


def test_only_the_smoke_card_calls_its_models_placeholders(tmp_path):
    from models.model_card import SMOKE_NOTE, write_card

    work, bundle = tmp_path / "work", tmp_path / "bundle"
    work.mkdir()
    bundle.mkdir()
    assert SMOKE_NOTE in write_card(work, bundle, "smoke", {}).read_text()
    assert "Placeholders" not in write_card(work, bundle, "cpu", {}).read_text()


def test_smoke_profile_never_replaces_the_shipped_bundle_by_default(tmp_path):
    import gendet_env

    from models.build_demo import default_bundle

    assert default_bundle("smoke", tmp_path) == tmp_path / "bundle"
    assert default_bundle("cpu", tmp_path) == default_bundle("gpu", tmp_path) == gendet_env.ROOT / "models" / "demo"


def test_card_reports_the_tokenizer_ceiling_and_what_was_kept(tmp_path):
    from models.model_card import write_card

    work, bundle = tmp_path / "work", tmp_path / "bundle"
    (work / "vqvae").mkdir(parents=True)
    bundle.mkdir()
    (work / "vqvae" / "metrics.json").write_text(json.dumps(
        {"val_psnr": 23.5, "codes_used": 511, "perplexity": 456.8, "step": 2118,
         "stopped": "time limit of 35.0 min (of 3000 steps)", "restored_from": "VQ-VAE kept from the build of abc"}))
    (bundle / "catdog.metrics.json").write_text(json.dumps(
        {"mAP50": 0.995, "mAP50-95": 0.814, "per_class": {}, "restored_from": "the build of commit abc"}))
    block = {"accuracy": 0.9, "ci95": [0.8, 1.0], "n": 10}
    jv = {"categories": {"single_object": block}, "overall": block,
          "true_captions_failed": {"single_object": 0.003, "faces": 0.097}}
    (work / "judge_validation.json").write_text(json.dumps(jv))
    ceiling = jv | {"true_captions_failed": {"single_object": 0.436, "faces": 0.283},
                    "through_vqvae": {"psnr": 24.36, "images": 400}}
    (work / "tokenizer_ceiling.json").write_text(json.dumps(ceiling))
    card = write_card(work, bundle, "cpu", {"vqvae": 2107.0, "generator": 3600.0}).read_text()
    assert ("(stopped by its time limit of 35.0 min (of 3000 steps), at step 2118) (VQ-VAE kept from the build of "
            "abc; the later stages were rebuilt)") in card
    assert "mAP50-95 0.814; per class AP50/AP50-95:  (kept from the build of commit abc)" in card
    assert "mean PSNR 24.36 dB" in card
    assert "| single_object | 0.997 | 0.564 |" in card and "| faces | 0.903 | 0.717 |" in card
    assert "about 1.6 hours on two cores" in card
    # a ceiling measured on other data (the generator's scenes) carries its own originals
    ceiling["through_vqvae"]["originals_true_captions_failed"] = {"single_object": 0.1, "faces": 0.2}
    ceiling["through_vqvae"]["originals_recall_by_size"] = {"0-0.25": {"recall": 1.0, "objects": 170}}
    ceiling["recall_by_size"] = {"0-0.25": {"recall": 0.2647, "objects": 170}}
    (work / "tokenizer_ceiling.json").write_text(json.dumps(ceiling))
    card = write_card(work, bundle, "cpu", {}).read_text()
    assert "| single_object | 0.900 | 0.564 |" in card and "| faces | 0.800 | 0.717 |" in card
    assert "| 0-0.25 | 170 | 1.000 | 0.265 |" in card
    assert "How this build was made" not in card
    # an evaluation of 8 images a prompt is also reported in blocks of the bars' 4 (its seeds 0 and 1)
    (work / "eval").mkdir()
    (work / "eval" / "summary.json").write_text(json.dumps({"images_per_prompt": 8, "seed": 0, "settings": {},
                                                            "overall": block, "categories": {"faces": block}}))
    passes = [True, True, False, False, True, False, False, False]  # blocks: 2 of 4, then 1 of 4
    (work / "eval" / "results.jsonl").write_text("".join(
        json.dumps({"image_index": i, "verdict": {"passed": p}}) + "\n" for i, p in enumerate(passes)))
    card = write_card(work, bundle, "cpu", {}).read_text()
    assert "Default suite, 8 images per prompt, seed 0" in card
    assert "in 2 blocks of 4 per prompt (block b holds the images `evaluation.run --seed b --images-per-prompt 4` " \
           "draws), overall: 0.500, 0.250 (SD 0.177)" in card
    (work / "NOTES.md").write_text("The detectors came from another build.\n")  # the build's own account
    card = write_card(work, bundle, "cpu", {}).read_text()
    assert "## How this build was made\n\nThe detectors came from another build.\n\n## Training time" in card


def test_card_commands_are_each_stages_last_run_in_the_order_of_those_runs(tmp_path):
    from models.model_card import _commands

    root = tmp_path / "repo"
    lines = ["datasets.scenes --n 8 --out {r}/w/scenes", "datasets.scenes --n 8 --backgrounds plain --out {r}/w/gen",
             "generation.train --config {r}/w/t2i.yaml", "evaluation.run --model m --out {r}/w/eval",
             "generation.train --config {r}/w/t2i.yaml --resume",  # resumed: one entry, its final command
             "datasets.scenes --n 80 --backgrounds plain --out {r}/w/more",  # a third scenes folder
             "generation.train --config {r}/w/t2i_more3.yaml", "evaluation.run --model m --out {r}/w/eval",
             "datasets.scenes --n 8 --out {r}/w/scenes"]  # drawn again, the same (a GPU call's scenes stay there)
    (tmp_path / "build.log").write_text("".join(f"$ /venv/python -m {x.format(r=root)}\nsome output\n" for x in lines))
    assert _commands(tmp_path / "build.log", root) == [
        "python -m datasets.scenes --n 8 --out w/scenes", "python -m datasets.scenes --n 8 --backgrounds plain --out w/gen",
        "python -m generation.train --config w/t2i.yaml", "python -m datasets.scenes --n 80 --backgrounds plain --out w/more",
        "python -m generation.train --config w/t2i_more3.yaml", "python -m evaluation.run --model m --out w/eval"]


def test_a_tokenizer_trained_beforehand_is_used_not_trained_again(tmp_path, monkeypatch):
    """`vqvae_from`: a committed VQ-VAE folder is copied into the work folder (so a lent GPU's one
    call goes to the generator), to the byte, and the card says where it came from."""
    from models import build_demo

    before = build("smoke", "cpu", tmp_path / "first", tmp_path / "b1", until="vqvae") / "vqvae"
    monkeypatch.setitem(build_demo.PROFILES, "smoke", {**build_demo.PROFILES["smoke"], "vqvae_from": str(before)})
    work = build("smoke", "cpu", tmp_path / "second", tmp_path / "b2", until="vqvae")
    assert "train_vqvae" not in (work / "build.log").read_text()
    a, b = (before / "model.safetensors").read_bytes(), (work / "vqvae" / "model.safetensors").read_bytes()
    assert a == b
    assert json.loads((work / "vqvae" / "metrics.json").read_text())["restored_from"].endswith(f"{before}/README.md")


def test_assemble_gives_the_bundle_the_profiles_sampling_defaults(tmp_path):
    """A profile's sampling defaults, chosen on the trained model, replace those it trained with;
    the work folder's pipeline keeps its own."""
    from models.build_demo import assemble

    gen, work, bundle = tmp_path / "gen", tmp_path / "work", tmp_path / "bundle"
    gen.mkdir()
    trained = {"format": "gendet-text-to-image-1", "image_size": 32,
               "defaults": {"steps": 25, "guidance_scale": 3.0, "truncation": 0.86, "purity": False}}
    (gen / "pipeline.json").write_text(json.dumps(trained))
    for task in ("catdog", "face"):
        (work / task).mkdir(parents=True)
        (work / task / "best.pt").write_bytes(b"weights")
        (work / task / "metrics.json").write_text("{}")
    assemble(gen, work, bundle, defaults={"guidance_scale": 5.0})
    shipped = json.loads((bundle / "generator" / "pipeline.json").read_text())
    assert shipped == {**trained, "defaults": {**trained["defaults"], "guidance_scale": 5.0}}
    assert json.loads((gen / "pipeline.json").read_text()) == trained
    assert (bundle / "catdog.pt").read_bytes() == b"weights"


def test_card_names_the_generator_version_of_a_rounds_scenes_where_it_differs(tmp_path):
    from models.model_card import write_card

    work, bundle = tmp_path / "work", tmp_path / "bundle"
    bundle.mkdir()
    splits = {"train": 90, "val": 10}
    for folder, version, seed in (("scenes", "scenes-1", 0), ("more_scenes", "scenes-1", 1),
                                  ("more_scenes2", "scenes-2", 4)):
        (work / folder).mkdir(parents=True)
        (work / folder / "meta.json").write_text(json.dumps(
            {"generator": version, "seed": seed, "n": 100, "size": 64, "splits": splits}))
    (work / "t2i_more6.yaml").write_text(f"data: {work / 'more_scenes'}\n")
    (work / "t2i_more7.yaml").write_text(f"data: {work / 'more_scenes2'}\n")
    card = write_card(work, bundle, "cpu", {}).read_text()
    assert "- the generator's round 7 learns 100 more of those scenes (seed 1: train 90, val 10; `more_scenes`)\n" \
        in card
    assert "- the generator's round 8 learns 100 more of those scenes (seed 4: train 90, val 10; `more_scenes2`; " \
           "drawn by scenes-2)\n" in card


def test_assemble_leaves_the_bundle_alone_when_an_input_is_missing(tmp_path):
    """On a new machine the work folder has no trained rounds: the build must say so, not delete
    the shipped generator and then fail to copy the new one."""
    from models.build_demo import assemble

    gen, work, bundle = tmp_path / "gen", tmp_path / "work", tmp_path / "bundle"
    (bundle / "generator").mkdir(parents=True)
    (bundle / "generator" / "pipeline.json").write_text("shipped")
    for task in ("catdog", "face"):
        (work / task).mkdir(parents=True)
        (work / task / "best.pt").write_bytes(b"weights")
        (work / task / "metrics.json").write_text("{}")
    with pytest.raises(SystemExit, match=f"missing {gen / 'pipeline.json'}.*models.restore_work"):
        assemble(gen, work, bundle)
    assert (bundle / "generator" / "pipeline.json").read_text() == "shipped"
    gen.mkdir()
    (gen / "pipeline.json").write_text(json.dumps({"format": "gendet-text-to-image-1", "image_size": 32,
                                                   "defaults": {}}))
    (work / "face" / "best.pt").unlink()
    with pytest.raises(SystemExit, match="face/best.pt"):
        assemble(gen, work, bundle)
    assert (bundle / "generator" / "pipeline.json").read_text() == "shipped"


def test_the_card_names_the_folders_it_was_built_in(tmp_path):
    """The card's rebuild command: the default work folder as the committed card reads (in any clone),
    another as given."""
    from models.build_demo import ROOT
    from models.model_card import rebuild_command

    for work in (ROOT / "runs" / "demo_cpu", tmp_path / "clone" / "runs" / "demo_cpu"):
        assert rebuild_command(work, "cpu") == "`python -m models.build_demo --profile cpu` (work folder `runs/demo_cpu/`"
    assert rebuild_command(tmp_path / "w", "smoke") == \
        f"`python -m models.build_demo --profile smoke --work {tmp_path / 'w'}` (work folder `{tmp_path / 'w'}/`"


def test_build_demo_resumes_an_interrupted_detector(tmp_path, monkeypatch):
    """models.build_demo passes --resume to a detector stage whose run has a last.pt and no
    metrics.json (detection.train's last output: a best.pt alone is a run stopped before its end)."""
    import models.build_demo as recipe

    ran = []
    monkeypatch.setattr(recipe, "run", lambda cmd, log: ran.append(cmd) or 1.0)
    work = tmp_path / "work"
    (work / "catdog" / "ultralytics" / "weights").mkdir(parents=True)
    (work / "catdog" / "ultralytics" / "weights" / "last.pt").write_bytes(b"")
    (work / "catdog" / "best.pt").write_bytes(b"")
    recipe.build("smoke", "cpu", work, tmp_path / "bundle", until="face", only={"catdog", "face"})
    detectors = {cmd[cmd.index("--task") + 1]: cmd for cmd in ran if "detection.train" in cmd}
    assert "--resume" in detectors["catdog"] and "--resume" not in detectors["face"]
    assert recipe.detector_resume(work / "face") == []


def test_logged_and_card_commands_are_quoted_so_a_path_with_spaces_runs_as_copied(tmp_path):
    """build.log and the card joined a command's words with spaces: `--out /my runs/w` ran as two words."""
    import shlex
    import sys

    from models.build_demo import run
    from models.model_card import _commands, rebuild_command

    log = tmp_path / "my logs" / "build.log"
    log.parent.mkdir()
    cmd = [sys.executable, "-c", "print('done')", str(tmp_path / "my runs" / "w")]
    run(cmd, log)
    assert log.read_text().splitlines()[0] == "$ " + shlex.join(cmd)
    assert shlex.split(log.read_text().splitlines()[0][2:]) == cmd
    root = tmp_path / "my repo"
    log.write_text(f"$ '/my venv/python' -m datasets.scenes --n 8 --out '{root}/w/my scenes'\n"
                   "$ /venv/python -m evaluation.run --out w/eval\n")  # an older, unquoted line reads as before
    assert _commands(log, root) == ["python -m datasets.scenes --n 8 --out 'w/my scenes'",
                                    "python -m evaluation.run --out w/eval"]
    assert f"--work '{tmp_path}/my work'`" in rebuild_command(tmp_path / "my work", "smoke")


def test_stage_logs_are_plain_text(tmp_path):
    """ultralytics colours its log lines even into a file: build.log keeps the text, not the codes."""
    import sys

    from models.build_demo import run

    log = tmp_path / "build.log"
    run([sys.executable, "-c", r"print('\x1b[34m\x1b[1mtrain:\x1b[0m 40 images'); print('done')"], log)
    assert log.read_text().splitlines()[1:] == ["train: 40 images", "done"]


def test_a_terminated_build_stops_its_stage_and_logs_its_last_words(tmp_path):
    """SIGTERM to the build alone: the stage gets SIGINT, the build waits for it, logs what it said
    and says in one line how to go on. Before, the stage trained on as an orphan."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from models.build_demo import ROOT

    stage = ("import os, sys, time\nprint('stage', os.getpid(), flush=True)\ntry:\n    time.sleep(60)\n"
             "except KeyboardInterrupt:\n    print('interrupted: the same command with --resume goes on', flush=True)\n"
             "    sys.exit(130)\n")
    build = ("import sys\nfrom pathlib import Path\nimport models.build_demo as b\nb.stop_on_sigterm()\n"
             f"try:\n    b.run([sys.executable, '-c', {stage!r}], Path({str(tmp_path / 'build.log')!r}))\n"
             "except KeyboardInterrupt:\n    sys.exit(130)\n")
    log = tmp_path / "build.log"
    # SIGTERM, and SIGINT sent to the build alone (`kill -INT PID`, not the terminal's Ctrl-C to the group)
    for sent in (signal.SIGTERM, signal.SIGINT):
        log.unlink(missing_ok=True)
        parent = subprocess.Popen([sys.executable, "-c", build], cwd=ROOT, start_new_session=True)
        for _ in range(300):
            if "stage " in (log.read_text() if log.is_file() else ""):
                break
            time.sleep(0.1)
        child = int(log.read_text().split("stage ")[1].split()[0])
        parent.send_signal(sent)
        assert parent.wait(30) == 130
        assert "interrupted: the same command with --resume goes on" in log.read_text()
        with pytest.raises(ProcessLookupError):  # no orphan left training
            os.kill(child, 0)


def test_ctrl_c_lets_a_training_stage_finish_its_step_however_long_it_takes(tmp_path):
    """The terminal's Ctrl-C reaches the build and its stage. A trainer then ends its step with a
    checkpoint; the build, 5 s on, asks again in case the signal had missed the stage, and used
    to ask with a second SIGINT, which cut the trainer's step short and lost it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from models.build_demo import ROOT, polite_signal

    assert polite_signal(["python", "-m", "generation.train", "--config", "c.yaml"]) == signal.SIGTERM
    assert polite_signal(["python", "-m", "generation.train_vqvae"]) == signal.SIGTERM
    assert polite_signal(["python", "-m", "evaluation.run", "--out", "generation.training"]) == signal.SIGINT
    stage = ("import os, sys, time\nfrom generation.stop_signal import StopAfterStep\n"
             "with StopAfterStep() as stop:\n    print('stage', os.getpid(), flush=True)\n"
             "    for step in range(1, 1000):\n        time.sleep(0.2)\n        if stop.requested:\n"
             "            time.sleep(8)  # the rest of a long step (a validation, a sample grid)\n"
             "            print(f'stopped after step {step}, with its checkpoint', flush=True)\n"
             "            sys.exit(130)\n")
    # the stage's command names a trainer (an argument the script ignores), as the build's own do
    build = ("import sys\nfrom pathlib import Path\nimport models.build_demo as b\nb.stop_on_sigterm()\n"
             f"try:\n    b.run([sys.executable, '-c', {stage!r}, 'generation.train'], "
             f"Path({str(tmp_path / 'build.log')!r}))\nexcept KeyboardInterrupt:\n    sys.exit(130)\n")
    log = tmp_path / "build.log"
    parent = subprocess.Popen([sys.executable, "-c", build], cwd=ROOT, start_new_session=True)
    for _ in range(300):
        if "stage " in (log.read_text() if log.is_file() else ""):
            break
        time.sleep(0.1)
    os.killpg(parent.pid, signal.SIGINT)  # the terminal's Ctrl-C: the whole foreground group
    assert parent.wait(40) == 130
    said = log.read_text().split("\nstage ", 1)[1]  # what the stage printed (the log shows its script first)
    assert re.search(r"stopped after step \d+, with its checkpoint", said) and "KeyboardInterrupt" not in said, said


def test_build_demo_says_in_a_line_how_to_go_on_after_ctrl_c(tmp_path, monkeypatch, capsys):
    import models.build_demo as recipe

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(recipe, "build", interrupted)
    assert recipe.main(["--profile", "smoke", "--work", str(tmp_path)]) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("interrupted: the stage in progress was stopped") and len(err.splitlines()) == 1
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # main installed the build's handler in this process
