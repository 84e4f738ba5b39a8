"""The generator's captions loader: rows, splits, exact pixels, the augment pipeline, errors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from datasets.scenes import generate
from generation.data import CaptionImageDataset, collate_captions, load_image, read_captions


def test_scenes_root_loads_with_exact_pixels(tmp_path):
    root = generate(tmp_path / "s", n=6, size=32, seed=2, val_fraction=0.34, progress=False)
    train = CaptionImageDataset(root, "train", size=32)
    val = CaptionImageDataset(root, "val", size=32)
    assert (len(train), len(val)) == (4, 2)
    image, captions = train[1]
    want = np.asarray(Image.open(root / "images/train/000001.png"), np.float32) / 255
    assert torch.allclose(image, torch.from_numpy(want).permute(2, 0, 1))  # same size: untouched
    rows = [json.loads(x) for x in (root / "captions.jsonl").read_text().splitlines()]
    assert captions == rows[1]["captions"]
    images, caps = collate_captions([train[0], train[1]])
    assert images.shape == (2, 3, 32, 32) and caps[1] == captions


def test_resize_and_centre_crop_never_flip(tmp_path):
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, :30] = 255  # white left band
    Image.fromarray(arr).save(tmp_path / "wide.png")
    # shortest side 40 -> 20: a 20x40 image whose columns 0..14 are white; the centre
    # crop takes columns 10..29, so exactly its first 5 columns are white
    x = load_image(tmp_path / "wide.png", 20)
    assert x.shape == (3, 20, 20)
    assert (x[:, :, :5] > 0.99).all() and (x[:, :, 5:] < 0.01).all()
    (tmp_path / "captions.jsonl").write_text('{"image": "wide.png", "captions": ["a"]}\n')
    ds = CaptionImageDataset(tmp_path, "train", size=20, augment=True)
    for _ in range(10):
        im, _ = ds[0]
        cols = im.mean(dim=(0, 1))  # random crops, never mirrored: white never right of black
        assert (cols[1:] <= cols[:-1] + 0.05).all(), cols


def test_bad_rows_and_images_are_named(tmp_path):
    (tmp_path / "captions.jsonl").write_text('{"image": "a.png"}\n{oops\n')
    with pytest.raises(ValueError, match=r"captions\.jsonl:2: not a JSON row"):
        read_captions(tmp_path)
    (tmp_path / "captions.jsonl").write_text('{"image": "a.png", "captions": "one caption"}\n')
    assert read_captions(tmp_path)[0]["captions"] == ["one caption"]
    # a hand-written file, as FORMATS.md describes it: what it does not allow is named, by line
    for row, message in (('{"image": "a.png", "captions": [1, 2]}', r":2: 'captions' must be a list of strings"),
                         ('{"image": "a.png", "captions": ["ok", "   "]}', r":2: caption 2 is empty"),
                         ('{"image": "a.png", "caption": "x", "split": "validation"}',
                          r":2: 'split' must be train or val, got 'validation'"),
                         ('["a.png"]', r":2: a row is an object with an 'image' path")):
        (tmp_path / "captions.jsonl").write_text('{"image": "a.png", "captions": ["fine"]}\n' + row + "\n")
        with pytest.raises(ValueError, match=r"captions\.jsonl" + message):
            read_captions(tmp_path)
    (tmp_path / "captions.jsonl").write_text('{"image": "a.png", "captions": []}\n')
    assert read_captions(tmp_path)[0]["captions"] == []  # enough for a VQ-VAE
    with pytest.raises(ValueError, match=r"captions\.jsonl:1: a\.png has no captions"):
        read_captions(tmp_path, need_captions=True)
    (tmp_path / "captions.jsonl").write_bytes(b'\xef\xbb\xbf{"image": "a.png", "captions": ["bom"]}\n')
    assert read_captions(tmp_path)[0]["captions"] == ["bom"]  # a byte-order mark is not part of the row
    (tmp_path / "captions.jsonl").write_text('{"image": "a.png", "captions": "one caption"}\n')
    (tmp_path / "a.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"a\.png: not a readable image"):
        CaptionImageDataset(tmp_path, "train", size=8)[0]
    with pytest.raises(ValueError, match="no rows for split 'val'"):
        CaptionImageDataset(tmp_path, "val")


def test_edit_inputs_from_files_and_from_uploaded_images_agree(tmp_path):
    """The CLI passes files, the app PIL images: the same tensors, the same centre square."""
    from generation.data import edit_inputs

    rng = np.random.default_rng(1)
    photo = Image.fromarray(rng.integers(0, 256, (40, 20, 3), dtype=np.uint8))  # tall: the middle 20x20
    mask = np.zeros((40, 20), np.uint8)
    mask[20:, :] = 255  # the lower half: in the middle square, its lower half
    photo.save(tmp_path / "photo.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    a = edit_inputs(20, tmp_path / "photo.png", tmp_path / "mask.png")
    b = edit_inputs(20, photo, Image.fromarray(mask))
    assert torch.equal(a["init_image"], b["init_image"]) and torch.equal(a["inpaint_mask"], b["inpaint_mask"])
    assert torch.equal(a["init_image"], torch.from_numpy(np.array(photo)[10:30]).permute(2, 0, 1) / 255)
    assert a["inpaint_mask"][10:].all() and not a["inpaint_mask"][:10].any()
    assert edit_inputs(20, photo).keys() == {"init_image"}
    with pytest.raises(ValueError, match="the mask: no white pixel"):
        edit_inputs(20, photo, Image.fromarray(np.zeros((40, 20), np.uint8)))


def test_images_are_read_as_a_person_sees_them(tmp_path):
    """A phone photo (EXIF orientation) trains and edits upright, and transparency is white, as the
    app shows both: the CLI read them sideways and on black."""
    from PIL import Image

    from generation.data import edit_inputs, load_image

    stored = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = 6  # shown a quarter turn clockwise
    Image.fromarray(stored).save(tmp_path / "phone.png", exif=exif.tobytes())
    upright = np.rot90(stored, k=-1)
    got = (load_image(tmp_path / "phone.png") * 255).round().byte().permute(1, 2, 0).numpy()
    assert np.array_equal(got, upright)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[2:6, 2:6] = (255, 0, 0, 255)  # an opaque red square on a transparent black ground
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cutout.png")
    init = edit_inputs(8, tmp_path / "cutout.png")["init_image"]
    assert init[:, 0, 0].tolist() == [1.0, 1.0, 1.0] and init[:, 3, 3].tolist() == [1.0, 0.0, 0.0]


def test_a_masks_transparent_part_is_kept_and_a_mask_of_another_size_is_refused(tmp_path):
    """A mask's transparent parts are not painted (read on black: kept); on white they redrew the
    whole image. Image and mask are each cut to their centre square, so sizes must match."""
    from PIL import Image

    from generation.data import edit_inputs

    Image.fromarray(np.full((16, 32, 3), 90, np.uint8)).save(tmp_path / "photo.png")
    rgba = np.zeros((16, 32, 4), np.uint8)
    rgba[:, 16:] = 255  # right half opaque white, left half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "mask.png")
    mask = edit_inputs(8, tmp_path / "photo.png", tmp_path / "mask.png")["inpaint_mask"]
    assert mask[:, :4].sum() == 0 and mask[:, 4:].all()  # the centre square's right half only
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match=r"small\.png: 16x16, but the image is 32x16; give a mask of the image's size"):
        edit_inputs(8, tmp_path / "photo.png", tmp_path / "small.png")
