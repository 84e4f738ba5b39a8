"""Rebuild the demo bundle in models/demo/ from nothing: data, VQ-VAE, generator, both detectors,
evaluation and the model card. Every stage is skipped when its output exists (and the
training stages resume from their checkpoints), so an interrupted build just runs again.

    python -m models.build_demo --profile cpu              # small, trains on a laptop CPU
    python -m models.build_demo --profile gpu --device 0   # the shipped size, on one GPU
    make demo-models PROFILE=cpu

Work goes to runs/demo_<profile>/; the bundle is assembled in models/demo/.
"""

from __future__ import annotations

import gendet_env

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = gendet_env.ROOT
# the generator's sampling defaults; a profile's "sampling" replaces some (chosen by a sweep on its model)
SAMPLING = {"steps": 25, "guidance_scale": 3.0, "truncation": 0.86}
PROFILES = {
    "cpu": {"size": 128, "n": 20000, "seed": 0,  # the gpu profile's scenes: one 128 px world for both
            # the generator (VQ-VAE and transformer) learns the same scenes on plain backgrounds: the
            # full world's noise, stripes and checkers took its capacity on two cores, and its samples
            # were textures (the detectors still train and are validated on every background)
            "generator_backgrounds": "plain",
            # and every object at least 3/8 of the image side: after the VQ round trip the detectors
            # found 26% of the objects under 1/4 of the side and 89-97% above 3/8 (validate_judge's
            # recall by size), and a generator trained on such scenes scored higher on fewer steps
            # (benchmarks/RESULTS.md, large-object experiment)
            "generator_min_object": 0.375,
            # the 128 px f=8 tokenizer trained beforehand on this CPU (about 3 hours; its README has
            # the commands): its tokens are half as unstable as the 64 px f=4 one's, and the same small
            # generator learned more from them per round (benchmarks/RESULTS.md, token stability and
            # the 128 px rounds). Without the folder, the recipe below trains stage 1 of it
            "vqvae_from": "models/tokenizer128",
            "vqvae": ["--steps", "15000", "--batch", "16", "--lr", "5e-4", "--channels", "32", "--codebook-size",
                      "512", "--embed-dim", "32", "--downsample", "8", "--val-every", "500", "--ckpt-every", "500",
                      "--time-limit", "100", "--schedule-by-time"],
            "text": {"kind": "scratch", "vocab_size": 400, "dim": 128, "layers": 2, "heads": 4, "max_length": 24},
            "transformer": {"width": 192, "depth": 4, "heads": 6},
            "train": {"steps": 2500, "batch_size": 32, "lr": 6.0e-4, "warmup": 200, "ema_decay": 0.995,
                      "log_every": 50, "val_every": 500, "sample_every": 2500, "ckpt_every": 250},
            "generator_time_limit": 70,  # a safety net: 2,500 steps took 46 min (0.9 it/s, the old loss)
            # then trained further from its EMA weights (generation.train's `init`): a fresh warm-up
            # and a cosine at half the peak lr, fitted to the time limit (--schedule-by-time), so it
            # ends on its low lr whatever the machine's speed
            "generator_more": {"train": {"steps": 4000, "batch_size": 32, "lr": 3.0e-4, "warmup": 100,
                                         "ema_decay": 0.995, "log_every": 50, "val_every": 500,
                                         "sample_every": 4000, "ckpt_every": 250},
                               "time_limit": 58, "schedule_by_time": True},
            # and once more from that round's EMA weights, longer: the step was 1.6x faster by then
            "generator_more2": {"train": {"steps": 6000, "batch_size": 32, "lr": 3.0e-4, "warmup": 100,
                                          "ema_decay": 0.995, "log_every": 50, "val_every": 500,
                                          "sample_every": 4000, "ckpt_every": 250},
                                "time_limit": 78, "schedule_by_time": True},
            # two more rounds on the same scenes, 40 and 100 minutes (3,727 and 6,991 steps on two cores)
            "generator_more3": {"like": "generator_more2", "time_limit": 40},
            "generator_more4": {"like": "generator_more2", "time_limit": 100,
                                "train": {"steps": 10000, "batch_size": 32, "lr": 3.0e-4, "warmup": 100,
                                          "ema_decay": 0.995, "log_every": 50, "val_every": 500,
                                          "sample_every": 4000, "ckpt_every": 250}},
            # a sixth round with the transformer grown from 4 to 6 blocks (the new ones start as the
            # identity: generation.train's `grow`), then a seventh on 20,000 new scenes of the same kind
            # (seed 1): against the fifth round's model at guidance 5, the seventh's at guidance 3 gained
            # 167 images and lost 132 on five fresh seed blocks (p = 0.049 against a bar of < 0.05 set
            # beforehand; the sixth's alone: 160 and 127, p = 0.059; benchmarks/RESULTS.md)
            "generator_more5": {"like": "generator_more2", "grow": 6, "time_limit": 80},
            "more_scenes": {"n": 20000, "seed": 1},
            "generator_more6": {"like": "generator_more2", "scenes": "more_scenes", "time_limit": 72},
            # an eighth round on 20,000 more scenes (seed 4) drawn by scenes-2, whose empty scenes
            # also carry "a photo of ..." captions: the seventh round had started drawing blobs for
            # "a photo of nothing", a phrasing its data never had. Against the seventh on five fresh
            # seed blocks: negatives 0.97 (bar 0.95) and 156 images gained, 138 lost, the two
            # conditions set beforehand (benchmarks/RESULTS.md, "Round 8")
            "more_scenes2": {"n": 20000, "seed": 4},
            "generator_more7": {"like": "generator_more2", "scenes": "more_scenes2", "time_limit": 70},
            # a ninth round, the same recipe on 20,000 more scenes-2 scenes (seed 5). Against the
            # eighth on five fresh seed blocks: negatives 1.00, 154 images gained and 147 lost (level
            # overall; counting up), the two conditions set beforehand (benchmarks/RESULTS.md, "Round 9")
            "more_scenes3": {"n": 20000, "seed": 5},
            "generator_more8": {"like": "generator_more2", "scenes": "more_scenes3", "time_limit": 70},
            # a tenth round with the transformer grown from 6 to 8 blocks, 60 minutes on 20,000 more
            # scenes-2 scenes (seed 6). Against the ninth on five fresh seed blocks: 201 images gained
            # and 142 lost (p = 0.0017, the bar set beforehand 0.05), negatives 0.97 (bar 0.95;
            # benchmarks/RESULTS.md, "Round 10")
            "more_scenes4": {"n": 20000, "seed": 6},
            "generator_more9": {"like": "generator_more2", "scenes": "more_scenes4", "grow": 8, "time_limit": 60},
            # sampling: the default guidance 3 (SAMPLING). The fifth round's model sampled best at 5
            # (0.245 against 3's 0.204 on three seed blocks), the grown sixth's at 3 (0.263 against 0.238).
            # 50 steps rather than 25 for the ninth round's model: on five fresh seed blocks 197 images
            # gained and 154 lost (p = 0.025, the bar set beforehand 0.05; benchmarks/RESULTS.md, "Steps")
            "sampling": {"steps": 50},
            "detector": ["--epochs", "60", "--imgsz", "128", "--batch", "64", "--model", "yolov8n.yaml",
                         "--time-limit", "3.0", "--workers", "8"],
            # on a CPU: 3 epochs of the 18,000 training scenes, about 17 min a detector on two cores
            "detector_cpu": ["--epochs", "3", "--imgsz", "128", "--batch", "32", "--model", "yolov8n.yaml"]},
    # seconds, for tests of the recipe itself; the models learn nothing
    "smoke": {"size": 32, "n": 40, "seed": 0, "generator_backgrounds": "plain", "generator_min_object": 0.375,
              "vqvae": ["--steps", "6", "--batch", "8", "--channels", "8", "--codebook-size", "32", "--embed-dim", "8",
                        "--downsample", "4", "--val-every", "3", "--ckpt-every", "3"],
              "text": {"kind": "scratch", "vocab_size": 200, "dim": 32, "layers": 1, "heads": 2, "max_length": 16},
              "transformer": {"width": 32, "depth": 1, "heads": 2},
              "train": {"steps": 4, "batch_size": 4, "warmup": 1, "log_every": 2, "val_every": 2, "sample_every": 4,
                        "ckpt_every": 2},
              "generator_more": {"train": {"steps": 2, "batch_size": 4, "warmup": 1, "log_every": 1, "val_every": 2,
                                           "sample_every": 2, "ckpt_every": 2}},
              "generator_more2": {"like": "generator_more"},
              "more_scenes": {"n": 48, "seed": 1},
              "generator_more3": {"like": "generator_more", "scenes": "more_scenes"},
              "generator_more4": {"like": "generator_more", "scenes": "more_scenes"},
              "generator_more5": {"like": "generator_more", "grow": 2},
              "generator_more6": {"like": "generator_more", "scenes": "more_scenes"},
              "more_scenes2": {"n": 40, "seed": 4},
              "generator_more7": {"like": "generator_more", "scenes": "more_scenes2"},
              "more_scenes3": {"n": 40, "seed": 5},
              "generator_more8": {"like": "generator_more", "scenes": "more_scenes3"},
              "more_scenes4": {"n": 40, "seed": 6},
              "generator_more9": {"like": "generator_more", "scenes": "more_scenes4", "grow": 3},
              "detector": ["--epochs", "1", "--imgsz", "32", "--batch", "8", "--model", "yolov8n.yaml", "--workers", "0"],
              "eval": ["--suite", "smoke", "--images-per-prompt", "1", "--steps", "2"],
              "half": True},
    # sized for one 10-minute call on a lent H100/H200 (models/gpu_call.sh all, models/GPU.md): every
    # training stage has a time limit, so it ends (and writes its model) inside the call whatever the
    # speed; the detectors train on the CPU afterwards (detector_cpu)
    "gpu": {"size": 128, "n": 20000, "seed": 0,  # the generator's scenes as in the cpu profile (16x16 tokens too)
            "generator_backgrounds": "plain", "generator_min_object": 0.375,
            # the VQ-VAE, trained beforehand on the CPU machine (its README has the command): the lent
            # GPU's one call then goes to the generator. Without that folder, the recipe below trains one
            # (2.5 min on an H200 gave 1,094 steps and kept too little: benchmarks/RESULTS.md)
            "vqvae_from": "models/tokenizer128",
            # batch 128: on a GPU a step of these small models costs about the same at 64 or 128 (launch
            # bound), so twice the images in the time; --schedule-by-time: the cosine fits the time
            # limit, whatever speed the lent machine has, and ends on the low lr
            "vqvae": ["--steps", "15000", "--batch", "128", "--lr", "5e-4", "--channels", "64", "--codebook-size",
                      "512", "--embed-dim", "64", "--downsample", "8", "--val-every", "1000", "--ckpt-every", "1000",
                      "--time-limit", "2.5", "--schedule-by-time"],
            # at most; models/gpu_call.sh also gives it the call's end (GENDET_STOP_BY, --stop-by), which
            # ends it sooner: with the tokenizer above, ~1.5 min go to scenes, tokens and start-ups, ~6.5 are left
            "generator_time_limit": 8.0,
            "generator_schedule_by_time": True,
            "half": True,  # ~88 MB of float32 weights: float16 keeps the bundle under 60 MB
            "text": {"kind": "scratch", "vocab_size": 1000, "dim": 256, "layers": 4, "heads": 4, "max_length": 32},
            "transformer": {"preset": "demo"},
            "train": {"steps": 30000, "batch_size": 128, "lr": 5e-4, "warmup": 300, "ema_decay": 0.999,
                      "log_every": 50, "val_every": 1000, "sample_every": 2000, "ckpt_every": 1000},
            "detector": ["--epochs", "60", "--imgsz", "128", "--batch", "64", "--model", "yolov8n.yaml",
                         "--time-limit", "3.0", "--workers", "8"],
            # the detectors need no GPU: on the CPU machine (no --device, or cpu) 3 epochs of the 18,000
            # training scenes, about 17 min each on two cores (the 3-minute GPU run above completed 3-5
            # epochs and met the bars: benchmarks/RESULTS.md, first GPU session)
            "detector_cpu": ["--epochs", "3", "--imgsz", "128", "--batch", "32", "--model", "yolov8n.yaml"]},
}
# the card's evaluation: 20 images per prompt, the images of seeds 0-4 at the bars' 4 a prompt (the
# seed rule), as one 4-image run's overall figure moved by 0.03 (SD) from seed to seed (benchmarks/RESULTS.md)
EVAL = ["--suite", "default", "--images-per-prompt", "20"]
STAGES = ("scenes", "generator_scenes", "vqvae", "generator", "generator_more", "generator_more2", "more_scenes",
          "generator_more3", "generator_more4", "generator_more5", "generator_more6", "more_scenes2",
          "generator_more7", "more_scenes3", "generator_more8", "more_scenes4", "generator_more9", "catdog", "face",
          "judge_validation", "tokenizer_ceiling", "evaluation", "speed")
# the rounds that train the generator further, each from the one before: stage -> its work folder
MORE_ROUNDS = {name: name.replace("generator_", "t2i_") for name in STAGES if name.startswith("generator_more")}


ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")  # terminal colour and cursor codes


_running: list[subprocess.Popen] = []  # the stage in progress, for the SIGTERM handler
TRAINERS = ("generation.train", "generation.train_vqvae")


def polite_signal(cmd: list[str]) -> int:
    """How the build asks a stage to stop. The trainers take SIGTERM as they take a first Ctrl-C (end
    the step under way with a checkpoint), and a second SIGTERM, unlike a second Ctrl-C, does not cut
    that short: the stage may have had the terminal's Ctrl-C already. Other stages end on SIGINT."""
    return signal.SIGTERM if any(part in TRAINERS for part in cmd) else signal.SIGINT


def run(cmd: list[str], log: Path) -> float:
    """Run a stage as its own process (its CLI is the recipe); returns seconds taken. Interrupted
    (Ctrl-C reaches the stage too; SIGTERM is passed on to it as one), it waits for the stage to
    end and logs its last words: a trainer says there where it can go on from."""
    shown = shlex.join(cmd)  # quoted: a path with spaces can be copied and run as shown
    print("$", shown, flush=True)
    t0 = time.time()
    with open(log, "ab") as fh:
        fh.write(("$ " + shown + "\n").encode())
        fh.flush()
        stage = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT)
        _running.append(stage)
        try:
            for line in stage.stdout:  # ultralytics colours its log whatever the output: plain text here
                fh.write(ANSI.sub(b"", line))
                fh.flush()
            code = stage.wait()
        except BaseException:
            try:
                rest = stage.communicate(timeout=5)[0]
            except subprocess.TimeoutExpired:  # the signal reached this process alone (`kill -INT PID`)
                stage.send_signal(polite_signal(cmd))
                try:
                    rest = stage.communicate(timeout=60)[0]
                except subprocess.TimeoutExpired:  # it does not end: no orphan goes on writing into the work folder
                    stage.kill()
                    rest = stage.communicate()[0]
            fh.write(ANSI.sub(b"", rest or b""))
            raise
        finally:
            _running.remove(stage)
    if code != 0:
        raise SystemExit(f"stage failed (exit {code}): {shown}; see {log}")
    return time.time() - t0


def stop_on_sigterm() -> None:
    """SIGTERM (a job scheduler, `kill`) ends the build as Ctrl-C does: the stage in progress is
    asked to stop (`polite_signal`), the build waits for it. Before, the stage went on as an orphan, and a build started
    again next to it trained into the same folder."""
    def handler(signum, frame):
        for stage in _running:
            stage.send_signal(polite_signal(stage.args))
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def default_bundle(profile: str, work: Path) -> Path:
    """models/demo/, except for the smoke profile, which never replaces the shipped bundle
    unless asked to (its dry run of the GPU route would otherwise overwrite it)."""
    return work / "bundle" if profile == "smoke" else ROOT / "models" / "demo"


def build(profile: str, device: str | None, work: Path | None = None, bundle: Path | None = None,
          until: str | None = None, only: set[str] | None = None) -> Path:
    """Run every stage not done yet (through `until`, when given; only those in `only`, when
    given: the others count as done); returns the bundle folder, or the work folder when it
    stopped early."""
    for name in ([until] if until else []) + sorted(only or []):
        if name not in STAGES:
            raise SystemExit(f"unknown stage {name!r}: choose from {', '.join(STAGES)}")
    p = PROFILES[profile]
    work = Path(work or ROOT / "runs" / f"demo_{profile}")
    bundle = Path(bundle or default_bundle(profile, work))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "build.log"
    times_path = work / "times.json"
    times = json.loads(times_path.read_text()) if times_path.is_file() else {}
    py = sys.executable
    gen_device = f"cuda:{device}" if device and device.isdigit() else device  # torch wants cuda:N
    dev = ["--device", gen_device] if gen_device else []
    scenes = work / "scenes"

    def stage(name: str, done: Path, cmd: list[str]) -> bool:
        """Run (or skip, when `done` exists) one stage; True when the build stops after it."""
        if done.exists():
            print(f"[{name}] done ({done})")
        elif only is not None and name not in only:
            print(f"[{name}] skipped (not in --only)")
        else:
            # the run that made the output (a stage completes in one run; one whose output was
            # removed to be redone, such as the evaluation, is timed afresh, not added up)
            print(f"[{name}] running; its output goes to {log}", flush=True)  # a stage may run for hours
            times[name] = run(cmd, log)
            times_path.write_text(json.dumps(times, indent=1))
            print(f"[{name}] finished in {times[name] / 60:.1f} min", flush=True)
        return name == until

    def scenes_cmd(n: int, seed: int, out: Path, generator: bool = False) -> list[str]:
        """datasets.scenes; `generator`: as the generator sees them (its backgrounds and object sizes)."""
        drawn = ["--backgrounds", p["generator_backgrounds"], "--min-object",
                 str(p.get("generator_min_object", 0.0))] if generator else []
        return [py, "-m", "datasets.scenes", "--n", str(n), "--size", str(p["size"]), "--seed", str(seed), "--quiet",
                "--workers", str(min(16, os.cpu_count() or 1)), *drawn, "--out", str(out)]

    if stage("scenes", scenes / "meta.json", scenes_cmd(p["n"], p["seed"], scenes)):
        return work
    # what the generator learns to draw: the same scenes, on fewer kinds of background where asked
    gen_scenes = work / "generator_scenes" if p.get("generator_backgrounds") else scenes
    if gen_scenes != scenes and stage("generator_scenes", gen_scenes / "meta.json",
                                      scenes_cmd(p["n"], p["seed"], gen_scenes, generator=True)):
        return work
    vq = work / "vqvae"
    trained_before = ROOT / p["vqvae_from"] if p.get("vqvae_from") else None
    if trained_before and (trained_before / "metrics.json").is_file() and not (vq / "metrics.json").exists():
        # a tokenizer trained beforehand (on the CPU machine) and committed: a lent GPU's one call
        # then goes to the generator; the card names where it came from
        # copied beside it and renamed: metrics.json, the stage's mark of done, comes with every other file
        copying = work / "vqvae.copying"
        shutil.rmtree(copying, ignore_errors=True)
        shutil.copytree(trained_before, copying)
        metrics = json.loads((copying / "metrics.json").read_text())
        metrics["restored_from"] = f"trained beforehand: {p['vqvae_from']}/README.md"
        (copying / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        if vq.exists():  # an earlier copy cut short
            shutil.rmtree(vq)
        copying.rename(vq)
        print(f"[vqvae] from {trained_before}")
    resume = ["--resume"] if (vq / "checkpoint").is_dir() else []
    if stage("vqvae", vq / "metrics.json", [py, "-m", "generation.train_vqvae", "--data", str(gen_scenes), "--out",
                                            str(vq), "--size", str(p["size"]), *p["vqvae"], *dev, *resume, "--quiet"]):
        return work
    # the bundle's sampling defaults (the app and every CLI use them); training's sample grids keep
    # SAMPLING, so a profile's choice, made on the trained model, does not change a training config
    sampling = {**SAMPLING, **p.get("sampling", {})}
    cfg = {"data": str(gen_scenes), "vqvae": str(vq), "out": str(work / "t2i"), "image_size": p["size"],
           "text": p["text"], "transformer": p["transformer"], "diffusion": {"num_timesteps": 100},
           "train": p["train"],
           "sample": {"prompts": ["a black cat", "a white dog", "two faces", "a cat to the left of a dog"],
                      "per_prompt": 4, **SAMPLING}}

    def generator_stage(name: str, out: str, config: dict, time_limit: float | None,
                        schedule_by_time: bool = False) -> bool:
        """Write OUT.yaml and train it (resuming a checkpoint); True when the build stops here."""
        (work / f"{out}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        resume = ["--resume"] if (work / out / "checkpoint").is_dir() else []
        limit = ["--time-limit", str(time_limit)] if time_limit else []
        if os.environ.get("GENDET_STOP_BY"):  # a lent machine's call ends then (models/gpu_call.sh)
            limit += ["--stop-by", os.environ["GENDET_STOP_BY"]]
        if limit and schedule_by_time:
            limit.append("--schedule-by-time")
        return stage(name, work / out / "pipeline" / "pipeline.json",
                     [py, "-m", "generation.train", "--config", str(work / f"{out}.yaml"), *dev, *resume, *limit,
                      "--quiet"])

    if generator_stage("generator", "t2i", cfg, p.get("generator_time_limit"), p.get("generator_schedule_by_time")):
        return work
    trained, drawn = work / "t2i" / "pipeline", set()
    for name, out in MORE_ROUNDS.items():  # the same model, trained further from its EMA weights
        more = p.get(name)
        if more is None:
            break
        more = {**p[more["like"]], **more} if "like" in more else more  # a round given as "like that one"
        data = gen_scenes
        if "scenes" in more:  # a round on scenes of its own: the generator's kind, more of them, another seed
            data, extra = work / more["scenes"], p[more["scenes"]]
            if more["scenes"] not in drawn and stage(more["scenes"], data / "meta.json",
                                                     scenes_cmd(extra["n"], extra["seed"], data, generator=True)):
                return work
            drawn.add(more["scenes"])  # rounds may share a set: one stage
        grow = {"grow": {"depth": more["grow"]}} if "grow" in more else {}  # more blocks, starting as the identity
        if generator_stage(name, out, {"init": str(trained), **grow, "data": str(data), "out": str(work / out),
                                       "train": more["train"], "sample": cfg["sample"]}, more.get("time_limit"),
                           more.get("schedule_by_time", p.get("generator_schedule_by_time"))):
            return work
        trained = work / out / "pipeline"
    on_cpu = (device or "cpu") == "cpu"
    detector = p["detector_cpu"] if on_cpu and "detector_cpu" in p else p["detector"]
    for task in ("catdog", "face"):
        # metrics.json is the last thing detection.train writes: best.pt alone is a run stopped before its end
        if stage(task, work / task / "metrics.json", [py, "-m", "detection.train", "--task", task, "--data", str(scenes),
                                                 *detector, "--device", device or "cpu", "--out",
                                                 str(work / task), *detector_resume(work / task), "--quiet"]):
            return work
    assemble(trained, work, bundle, half=p.get("half", False), defaults=sampling)
    eyes = f"catdog={bundle / 'catdog.pt'},face={bundle / 'face.pt'}"
    stopped = stage("judge_validation", work / "judge_validation.json",
                    [py, "-m", "evaluation.validate_judge", "--data", str(scenes), "--detectors", eyes,
                     "--out", str(work)])
    # evaluation.run reads it from the bundle; repository-relative paths so the clone can move
    (bundle / "judge_validation.json").write_text((work / "judge_validation.json").read_text().replace(f"{ROOT}/", ""))
    # what the VQ-VAE keeps of the generator's scenes in the judge's eyes: the most the generator can score
    stopped = stopped or stage("tokenizer_ceiling", work / "tokenizer_ceiling.json",
                               [py, "-m", "evaluation.validate_judge", "--data", str(gen_scenes), "--detectors", eyes,
                                "--through-vqvae", str(bundle / "generator"), "--out", str(work)])
    if stopped or stage("evaluation", work / "eval" / "summary.json",
                        [py, "-m", "evaluation.run", "--model", str(bundle / "generator"), "--detectors", eyes,
                         "--seed", "0", *p.get("eval", EVAL),
                         "--out", str(work / "eval"), *dev, "--quiet"]):
        return work
    stage("speed", work / "speed.json",
          [py, "-m", "benchmarks.sampling_speed", "--model", str(bundle / "generator"), "--batch", "4", "--steps",
           str(sampling["steps"]), "--guidance", str(sampling["guidance_scale"]), "--device", gen_device or "cpu",
           "--json-out", str(work / "speed.json")])
    from models.model_card import write_card

    write_card(work, bundle, profile, times)
    return bundle


def detector_resume(out: Path) -> list[str]:
    """["--resume"] for a detector run that was interrupted (ultralytics' last.pt, no metrics.json
    yet): detection.train refuses to start over in its folder, and resuming a run trained to its end
    writes its outputs."""
    from detection.resume import LAST  # where ultralytics keeps its resumable checkpoint

    return ["--resume"] if (out / LAST).is_file() and not (out / "metrics.json").exists() else []


def assemble(generator: Path, work: Path, bundle: Path, half: bool = False, defaults: dict | None = None) -> None:
    """Copy the generator pipeline and work's detectors into models/demo/ (replacing an older
    bundle); `half` stores the generator's weights in float16 (models.half: same draws, half the
    bytes); `defaults` replace the pipeline's sampling defaults (the profile's, measured on the
    trained model, can differ from those it was trained with)."""
    # every input first: the bundle is replaced only by a whole new one (a work folder on a new
    # machine has no trained rounds until models.restore_work and a copied generator give them)
    missing = [p for p in (generator / "pipeline.json", *(work / t / f for t in ("catdog", "face")
                                                           for f in ("best.pt", "metrics.json"))) if not p.is_file()]
    if missing:
        raise SystemExit(f"cannot assemble {bundle}: missing {', '.join(map(str, missing))} (the bundle is left as "
                         "it was; on a machine without the build's work folder see `python -m models.restore_work`)")
    bundle.mkdir(parents=True, exist_ok=True)
    # made whole beside the bundle's generator, then swapped in: the app loads models/demo by
    # default, and a kill midway left it with no generator or a half-copied one
    gen, staged, old = bundle / "generator", bundle / ".generator.new", bundle / ".generator.old"
    for leftover in (staged, old):
        shutil.rmtree(leftover, ignore_errors=True)
    shutil.copytree(generator, staged)
    if defaults:
        from generation.files import atomic_write_json

        meta = json.loads((staged / "pipeline.json").read_text())
        atomic_write_json({**meta, "defaults": {**meta["defaults"], **defaults}}, staged / "pipeline.json")
    if half:
        from models.half import halve

        halve(staged)
    if gen.exists():
        gen.rename(old)
    staged.rename(gen)
    shutil.rmtree(old, ignore_errors=True)
    for task in ("catdog", "face"):
        copy_over(work / task / "best.pt", bundle / f"{task}.pt")
        # repository-relative paths, as in judge_validation.json: the clone can move
        metrics = (work / task / "metrics.json").read_text().replace(f"{ROOT}/", "")
        tmp = bundle / f".{task}.metrics.json.tmp"
        tmp.write_text(metrics)
        tmp.replace(bundle / f"{task}.metrics.json")


def copy_over(source: Path, target: Path) -> None:
    """shutil.copy2, through a temporary file beside the target: a kill leaves the old file whole."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copy2(source, tmp)
    tmp.replace(target)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.build_demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", choices=sorted(PROFILES), default="cpu",
                    help="cpu: the shipped bundle's recipe; gpu: for a lent GPU; smoke: tiny, for tests (default cpu)")
    ap.add_argument("--device", type=gendet_env.device_arg, default=None,
                    help="cpu, 0, cuda:0 ... (default: cuda when available)")
    ap.add_argument("--work", default=None, help="work folder (default runs/demo_<profile>)")
    ap.add_argument("--bundle", default=None, help="bundle folder (default models/demo; for --profile smoke, "
                                                   "the work folder's bundle/)")
    ap.add_argument("--until", choices=STAGES, default=None,
                    help="stop after this stage (a later run continues; for time-limited machines)")
    ap.add_argument("--only", default=None, help="comma-separated stages to run; the others are skipped "
                                                 "(e.g. catdog,face on a machine that has only the scenes)")
    args = ap.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    stop_on_sigterm()
    try:
        path = build(args.profile, args.device, args.work, args.bundle, args.until, only)
    except KeyboardInterrupt:
        print("\ninterrupted: the stage in progress was stopped (its last words are in build.log); the same "
              "command goes on: finished stages are kept, and a training stage resumes from its checkpoint",
              file=sys.stderr)
        return 130
    print(f"stopped after {args.until} ({path})" if args.until else f"built {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
