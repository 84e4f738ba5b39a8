"""The Python API as a notebook user calls it: images in any form read the same, and arguments of
the wrong type or range are refused with a message naming them (they used to run as something
else: seeds='12' drew seeds 1 and 2, a float image was judged black, purity='no' was on)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from datasets.images import rgb_uint8
from test_pipeline import tiny_pipeline


def test_every_image_form_reads_as_the_same_uint8_array(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    chw = torch.from_numpy(rgb).permute(2, 0, 1)
    for form in (rgb, rgb / 255.0, (rgb / 255.0).astype(np.float32), chw, chw.float() / 255, Image.fromarray(rgb),
                 str(tmp_path / "x.png"), tmp_path / "x.png", np.dstack([rgb, np.full((6, 5), 9, np.uint8)])):
        assert np.array_equal(rgb_uint8(form), rgb), type(form)
    assert np.array_equal(rgb_uint8(np.eye(3, dtype=bool))[..., 1], np.eye(3) * 255)
    assert np.array_equal(rgb_uint8(np.full((2, 2, 3), 1.2)), np.full((2, 2, 3), 255))  # a decoder's overshoot
    for bad, said in ((chw.float(), "floats are read in [0, 1]"), (rgb.astype(float), "holds values up to"),
                      (tmp_path / "none.png", "none.png: cannot read the image"), ([1, 2], "unsupported image type list"),
                      (torch.zeros(2, 3, 4, 4), "expected a [3,H,W] image tensor")):
        with pytest.raises(ValueError, match=said.replace("[", r"\[").replace("]", r"\]")):
            rgb_uint8(bad)


def test_the_judge_measures_colours_on_float_arrays_and_tensors_as_on_uint8():
    from datasets.scenes_draw import FUR_RGB
    from evaluation.judge import judge
    from evaluation.prompts import parse_prompt

    image = np.zeros((64, 64, 3), np.uint8)
    image[8:56, 8:56] = FUR_RGB["white"]
    dets = [{"label": "cat", "confidence": 0.9, "box": (8, 8, 56, 56)}]
    spec = parse_prompt("a white cat")
    forms = [image, image / 255.0, torch.from_numpy(image).permute(2, 0, 1).float() / 255, Image.fromarray(image)]
    assert [judge(spec, dets, (64, 64), image=im).reason for im in forms] == ["ok: 1 cat, no dog, no face, white cat"] * 4


def test_the_judge_checks_a_spec_given_as_a_dict():
    from evaluation.judge import judge

    dets = [{"label": "cat", "confidence": 0.9, "box": (0, 0, 10, 10)}]
    assert judge({"expect": {"cat": {"count": 1}}}, dets, (64, 64)).passed
    # a caller's own fields, numpy counts, labels of a user's own detector, nothing asked: all taken
    assert judge({"id": 7, "expect": {"cat": {"count": np.int64(1)}, "person": {"count": 0}}}, dets,
                 np.array([64, 64])).passed
    assert judge({"expect": {}}, [], (64, 64)).reason == "ok"
    for spec, said in (({"expects": {"cat": {"count": 2}}}, "spec: 'expect' must map labels"),  # judged nothing: passed
                       ({"expect": {"cat": {"max": 1}}}, "spec: expect.cat must be {count: N}"),
                       ({"expect": {"cat": {"min": 0}}}, "spec: expect.cat must be"),
                       ({"expect": {"cat": {"count": 1}, "dog": {"count": 1}}, "relations": [["cat", "leftof", "dog"]]},
                        "spec: relations[0] must be [a, relation, b]")):
        with pytest.raises(ValueError, match=said.replace("(", r"\(").replace(")", r"\)").replace("{", r"\{")
                           .replace("[", r"\[").replace("]", r"\]")):
            judge(spec, dets, (64, 64))
    with pytest.raises(ValueError, match=r"image_size must be \(width, height\), got 128"):
        judge({"expect": {"cat": {"count": 1}}}, dets, 128)


def test_the_runner_saves_what_a_generate_function_returns_in_any_image_form():
    from evaluation.runner import to_uint8_images

    rgb = np.random.default_rng(1).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    tensor = torch.from_numpy(rgb).permute(0, 3, 1, 2)
    for batch in (tensor, tensor.float() / 255, list(rgb / 255.0), rgb, [Image.fromarray(a) for a in rgb]):
        got = to_uint8_images(batch)
        assert len(got) == 2 and all(np.array_equal(g, r) for g, r in zip(got, rgb)), type(batch)
    with pytest.raises(ValueError, match=r"generate returned a tensor of shape \(3, 4, 4\)"):
        to_uint8_images(tensor[0])
    with pytest.raises(ValueError, match="generate returned an image gendet cannot read: a float image holds"):
        to_uint8_images(tensor.float())


@pytest.mark.parametrize("kwargs, error, said", [
    ({"seeds": "12"}, TypeError, "seeds must be a list of integers, got '12'"),
    ({"seeds": []}, ValueError, "seeds is empty"),
    ({"seeds": [1], "num_images": 3}, ValueError, "seeds gives 1 image(s) and num_images 3"),
    ({"seeds": [1, -2]}, ValueError, "seeds must be an integer in [0, 2**63), got -2"),
    ({"seed": -1}, ValueError, "seed must be an integer in [0, 2**63), got -1"),
    ({"seed": 1.7}, ValueError, "seed must be an integer in [0, 2**63), got 1.7"),
    ({"seed": 2**63 - 1, "num_images": 2}, ValueError, "seed must be an integer in [0, 2**63)"),
    ({"num_images": True}, ValueError, "num_images must be an integer >= 1, got True"),
    ({"num_images": "2"}, ValueError, "num_images must be an integer >= 1, got '2'"),
    ({"steps": 2.7}, ValueError, "steps must be an integer, got 2.7"),
    ({"purity": "no"}, ValueError, "purity must be True or False, got 'no'"),
    ({"guidance_scale": float("nan")}, ValueError, "guidance_scale must be >= 0 (1 = off), got nan"),
    ({"guidance_scale": float("inf")}, ValueError, "guidance_scale must be >= 0"),
    ({"truncation": "0.5"}, ValueError, "truncation must be a number, got '0.5'"),
])
def test_the_pipeline_names_an_argument_of_the_wrong_type_or_range(kwargs, error, said):
    with pytest.raises(error, match=said.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("*", r"\*")):
        tiny_pipeline()("a cat", steps=kwargs.pop("steps", 2), **kwargs)


def test_the_pipeline_takes_numbers_of_any_numeric_type():
    """What the checks above must not refuse: numpy and torch numbers, seeds as an array or range,
    2.0 steps, purity 0 or numpy's bool, prompts as a numpy array. The same images as plain ints."""
    pipe = tiny_pipeline()
    want = pipe("a cat", seeds=[3, 4], steps=2, guidance_scale=3.0, purity=False).tokens
    for seeds in (np.array([3, 4]), torch.tensor([3, 4]), range(3, 5), (3, 4), (s for s in (3, 4))):
        assert torch.equal(pipe("a cat", seeds=seeds, steps=2.0, guidance_scale=torch.tensor(3.0),
                                purity=np.bool_(False)).tokens, want)
    assert torch.equal(pipe(np.array(["a cat"]), seed=np.int64(3), num_images=2, steps=np.int32(2),
                            guidance_scale=3, purity=0).tokens, want)
    pipe.set_defaults({"steps": 4.0, "purity": 0})
    assert pipe.defaults["steps"] == 4 and pipe.defaults["purity"] is False


def test_the_pipeline_refuses_prompts_that_are_not_text():
    for prompts in (None, ["a cat", 3], 7):
        with pytest.raises(TypeError, match="prompts must be a string or a list of strings"):
            tiny_pipeline()(prompts, steps=2)


def test_editing_takes_a_pil_image_or_array_as_the_tensor_it_documents():
    from generation.data import edit_inputs

    pipe = tiny_pipeline()
    rgb = np.random.default_rng(2).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    tensor = edit_inputs(16, Image.fromarray(rgb))["init_image"]
    assert torch.equal(edit_inputs(16, rgb / 255.0)["init_image"], tensor)  # a float array was read black
    want = pipe("a cat", steps=2, init_image=tensor, filter_ratio=0.5, seed=1).tokens
    for form in (Image.fromarray(rgb), rgb, rgb / 255.0):
        assert torch.equal(pipe("a cat", steps=2, init_image=form, filter_ratio=0.5, seed=1).tokens, want)
    for bad, said in (((tensor * 255).byte(), "init_image is a torch.uint8 tensor: give floats in [0, 1]"),
                      (tensor * 255, r"init_image holds values in \[\d+, 2\d\d\]")):
        with pytest.raises(ValueError, match=said.replace("[0, 1]", r"\[0, 1\]")):
            pipe("a cat", steps=2, init_image=bad, filter_ratio=0.5)
    with pytest.raises(ValueError, match="filter_ratio must be a number in"):
        pipe("a cat", steps=2, init_image=tensor, filter_ratio=float("nan"))
    with pytest.raises(ValueError, match="inpaint_mask marks no pixel to regenerate"):
        pipe("a cat", steps=2, init_image=tensor, inpaint_mask=torch.zeros(16, 16, dtype=torch.bool))
    mask = np.zeros((16, 16), bool)
    mask[:8] = True  # a mask as an array: True (white) = redraw
    out = pipe("a cat", steps=2, init_image=tensor, inpaint_mask=mask, seed=1)
    same = pipe("a cat", steps=2, init_image=tensor, inpaint_mask=torch.from_numpy(mask), seed=1)
    assert torch.equal(out.tokens, same.tokens)
    assert out.settings["inpaint_tokens"] == 8  # the top half of a 4x4 token grid: said in the settings


def test_loading_a_generator_names_what_is_wrong_and_keeps_the_random_state(tmp_path):
    from generation.pipeline import TextToImage

    folder = tiny_pipeline().save_pretrained(tmp_path / "gen")
    torch.manual_seed(5)
    before = torch.get_rng_state()
    pipe = TextToImage.from_pretrained(folder / "pipeline.json")  # the file itself: its folder
    assert torch.equal(torch.get_rng_state(), before)  # the throwaway initial weights drew nothing of ours
    for device, said in (("gpu", "'gpu' is not a device: use cpu, cuda"), ("cuda:99", "'cuda:99': ")):
        with pytest.raises(ValueError, match=said):
            TextToImage.from_pretrained(folder, device=device)
    with pytest.raises(ValueError, match="defaults: steps must be >= 1, got 0"):
        pipe.set_defaults({"steps": 0})
    with pytest.raises(ValueError, match="defaults: guidance_scale must be a number, got 'x'"):
        pipe.set_defaults({"guidance_scale": "x"})
    (folder / "diffusion.json").write_text("{broken")
    with pytest.raises(ValueError, match=r"gen/diffusion.json: not valid JSON"):
        TextToImage.from_pretrained(folder)
    (folder / "diffusion.json").write_text(json.dumps(tiny_pipeline().diffusion.config()))
    config = json.loads((folder / "transformer" / "config.json").read_text())
    (folder / "transformer" / "config.json").write_text(json.dumps({**config, "depth": 2}))
    with pytest.raises(ValueError, match=r"model.safetensors: the weights do not fit .*config.json \(Missing key"):
        TextToImage.from_pretrained(folder)


def test_sample_refuses_zero_images_before_loading(tmp_path):
    from generation.sample import sample

    with pytest.raises(ValueError, match="n must be an integer >= 1, got 0"):
        sample("a cat", tmp_path / "no_model_needed", tmp_path / "out", n=0)


def test_the_detector_api_checks_its_arguments_and_reads_files(tiny_detector, tmp_path):
    from detection._common import UsageError
    from detection.detector import Detector

    weights = tiny_detector[1] / "best.pt"
    det = Detector.load(weights, device="cpu")
    image = sorted((tiny_detector[0] / "images" / "val").glob("*.png"))[0]
    from_file = det.detect(str(image), conf=0.01)[0].to_dict()
    assert from_file == det.detect(Image.open(image), conf=0.01)[0].to_dict()
    assert det.detect([image], conf=0.01)[0].to_dict() == from_file  # a Path in a list
    for kwargs, said in (({"batch": -1}, "batch must be an integer >= 1, got -1"), ({"batch": 0}, "got 0"),
                         ({"imgsz": 0}, "imgsz must be an integer >= 32"), ({"imgsz": -64}, "got -64"),
                         ({"batch": 2.5}, "got 2.5")):
        with pytest.raises(UsageError, match=said):
            det.detect(str(image), **kwargs)
    assert det.detect(str(image), conf=0.01, batch=np.int64(2), imgsz=64.0)[0].to_dict() == \
        det.detect(str(image), conf=0.01, imgsz=64)[0].to_dict()
    assert Detector.load(weights, device="").device in ("cpu", "cuda:0")  # empty: the default
    bf16 = torch.from_numpy(np.asarray(Image.open(image).convert("RGB"))).permute(2, 0, 1).float().div(255)
    assert det.detect(bf16.bfloat16(), conf=0.01)[0].width == bf16.shape[2]  # numpy has no bfloat16
    with pytest.raises(UsageError, match=r"image 0: a float image holds values up to"):
        det.detect(torch.full((3, 8, 8), 200.0))  # 0-255 floats: clipped to white, nothing found
    for device, said in (("gpu", "device: 'gpu' is not a device"), ("cuda:99", "device: 'cuda:99': "),
                         (0, "device: 0: ")):
        with pytest.raises(UsageError, match=said):
            Detector.load(weights, device=device)


def test_the_judges_detectors_are_checked_against_their_task(tiny_detector):
    from evaluation.detectors import JudgeDetectors

    weights = tiny_detector[1] / "best.pt"  # a cat/dog detector
    with pytest.raises(ValueError, match="unknown detector task 'cats': use catdog and/or face"):
        JudgeDetectors.load({"cats": weights}, device="cpu")
    with pytest.raises(ValueError, match="given as the face detector, but it finds cat, dog, not face"):
        JudgeDetectors.load({"face": weights}, device="cpu")


def test_run_suite_takes_a_pipeline_as_generate_checked_does(tiny_detector, tmp_path):
    from evaluation.detectors import JudgeDetectors
    from evaluation.runner import read_rows, run_suite
    from evaluation.suite import suite_from_prompts

    pipe = tiny_pipeline()
    eyes = JudgeDetectors.load({"catdog": tiny_detector[1] / "best.pt"}, device="cpu")
    run_suite(suite_from_prompts(["a cat"]), pipe, eyes, tmp_path / "run", images_per_prompt=2,
              settings={"steps": 2}, progress=False)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["settings"] == {**pipe.defaults, "steps": 2}  # what it sampled with, recorded
    saved = [np.asarray(Image.open(tmp_path / "run" / r["image"])) for r in read_rows(tmp_path / "run" / "results.jsonl")]
    drawn = pipe("a cat", seeds=[r["seed"] for r in read_rows(tmp_path / "run" / "results.jsonl")], steps=2).pil()
    assert all(np.array_equal(s, np.asarray(d)) for s, d in zip(saved, drawn))


def test_small_api_mistakes_are_named():
    from datasets.augment import apply, detection_transforms
    from datasets.scenes import render_scene
    from evaluation.judge import JudgeRules
    from evaluation.prompts import ParseError, parse_prompt
    from evaluation.spec import SpecError
    from evaluation.suite import suite_from_prompts

    with pytest.raises(SpecError, match="expected a list of prompts, got one string 'two black cats'"):
        suite_from_prompts("two black cats")
    with pytest.raises(ParseError, match="a prompt is a string, got NoneType"):
        parse_prompt(None)
    with pytest.raises(ValueError, match="JudgeRules.presence_conf must be a number, got '0.3'"):
        JudgeRules(presence_conf="0.3")
    one = render_scene(3, 64, 0, backgrounds="plain")  # one kind as a string, as generate() takes it
    assert np.array_equal(np.asarray(one[0]), np.asarray(render_scene(3, 64, 0, backgrounds=("plain",))[0]))
    for kwargs, said in (({"size": 8}, "size must be at least"), ({"seed": -1}, "seed must be >= 0"),
                         ({"count_probs": (0.5, 0.6)}, "count probs must be 5 numbers")):
        with pytest.raises(ValueError, match=said):
            render_scene(0, **{"size": 64, "seed": 0, **kwargs})
    with pytest.raises(ValueError, match="index must be >= 0"):
        render_scene(-1, 64, 0)
    with pytest.raises(ValueError, match=r"boxes must be in the transform's 'yolo' format.*up to 50"):
        apply(detection_transforms(64), np.zeros((64, 64, 3), np.uint8), [[10, 10, 50, 50]], ["cat"])


def test_the_packages_export_their_main_names_lazily():
    """`from generation import TextToImage`, `from evaluation import judge, ...`, `from detection
    import Detector`; importing the bare packages loads no torch (a submodule import stays quick)."""
    import subprocess
    import sys

    import gendet_env

    code = ("import sys, generation, evaluation, detection\n"
            "assert 'torch' not in sys.modules\n"
            "assert {'TextToImage'} <= set(dir(generation)) and 'Detector' in dir(detection)\n"
            "from generation import TextToImage\n"
            "from generation.pipeline import TextToImage as T\n"
            "from evaluation import parse_prompt, judge, JudgeDetectors, JudgeRules, run_suite, generate_checked\n"
            "from evaluation import load_suite, suite_from_prompts\n"
            "assert TextToImage is T and parse_prompt('two dogs').category == 'counting'\n"
            "print('ok')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=gendet_env.ROOT)
    assert run.stdout.strip() == "ok", run.stderr
