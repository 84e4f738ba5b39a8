"""Settings survive a PNG round trip; images without them give a clear error."""

import io

import numpy as np
import pytest
from PIL import Image

from generation.png_info import png_bytes, read_settings, save_png


def test_settings_round_trip_with_types(tmp_path):
    image = Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3))
    settings = {"prompt": "two black cats", "seed": 7, "steps": 25, "guidance_scale": 3.5,
                "truncation": 0.86, "purity": True, "model": "models/demo"}
    path = save_png(image, tmp_path / "x.png", settings)
    assert read_settings(path) == settings
    assert read_settings(path.read_bytes()) == settings
    with Image.open(path) as im:
        assert np.array_equal(np.asarray(im), np.asarray(image))  # pixels untouched
        assert im.text["gendet:prompt"] == "two black cats" and im.text["gendet:seed"] == "7"
    assert not list(tmp_path.glob("*.tmp"))


def test_missing_or_broken_settings(tmp_path):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(plain)
    with pytest.raises(ValueError, match="plain.png: no gendet settings"):
        read_settings(plain)
    with pytest.raises(ValueError, match="^the image: not a readable PNG$"):
        read_settings(b"this is not a png")
    upload = io.BytesIO(b"this is not a png")  # the app hands over its UploadedFile: file-like, named
    upload.name = "photo.png"
    with pytest.raises(ValueError, match="^photo.png: not a readable PNG$"):
        read_settings(upload)
    data = png_bytes(Image.new("RGB", (2, 2)), {"seed": 1})
    assert read_settings(io.BytesIO(data)) == {"seed": 1}


def test_settings_chunk_after_the_pixels_is_still_found(tmp_path):
    """Some tools rewrite a PNG with its text chunks after IDAT; PIL then reports them only
    after decoding. read_settings must still find them, not say 'not saved by gendet'."""
    import json
    import struct
    import zlib

    buf = io.BytesIO()
    Image.new("RGB", (3, 2), (10, 20, 30)).save(buf, format="PNG")
    data = buf.getvalue()
    iend = data.rindex(b"IEND") - 4  # the IEND chunk starts with its 4-byte length
    body = b"gendet\0" + json.dumps({"seed": 5, "prompt": "a cat"}).encode()
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    late = data[:iend] + chunk + data[iend:]
    assert late.index(b"tEXt") > late.index(b"IDAT")
    with Image.open(io.BytesIO(late)) as im:
        assert "gendet" not in im.info  # not seen before the pixels are read
    assert read_settings(late) == {"seed": 5, "prompt": "a cat"}
    (tmp_path / "late.png").write_bytes(late)
    assert read_settings(tmp_path / "late.png") == {"seed": 5, "prompt": "a cat"}


def test_unreadable_bytes_after_ultralytics_patched_pil():
    """ultralytics replaces PIL's Image.open with one that tries HEIF on unknown files;
    a corrupt upload must still be a ValueError with the file's name."""
    import gendet_env

    gendet_env.ultralytics()
    with pytest.raises(ValueError, match="^the image: not a readable PNG$"):  # no ModuleNotFoundError in it
        read_settings(b"this is not a png")


def test_settings_read_in_words():
    from generation.sampling_options import describe_settings

    assert describe_settings({"steps": 50, "guidance_scale": 3.0, "truncation": 0.86, "purity": False}) == \
        "50 steps, guidance 3, truncation 0.86"
    assert describe_settings({"steps": 1, "guidance_scale": 1.0, "truncation": 1.0, "purity": True}) == \
        "1 step, no guidance, no truncation, purity"
    edit = {"steps": 25, "filter_ratio": 0.6, "init_image": "scene.png"}
    assert describe_settings(edit) == "25 steps, scene.png redrawn at strength 0.6"
    assert describe_settings({**edit, "mask": "m.png"}) == "25 steps, scene.png redrawn at strength 0.6 inside m.png"
    assert describe_settings({"init_image": "scene.png", "mask": "m.png"}) == "scene.png inpainted inside m.png"


def test_shared_pngs_record_the_bundle_by_its_place_in_the_repository(tmp_path):
    """A PNG people pass around names the model as models/demo/generator, not this machine's path."""
    import gendet_env

    assert gendet_env.shown_path(gendet_env.ROOT / "models" / "demo" / "generator") == "models/demo/generator"
    assert gendet_env.shown_path(tmp_path / "gen") == str(tmp_path / "gen")  # elsewhere: as given
    assert gendet_env.shown_path("runs/x") == "runs/x"
