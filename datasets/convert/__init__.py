"""Convert real dataset formats into gendet's on-disk formats (datasets/FORMATS.md).

Detection (YOLO dataset, one task):

* ``coco``  COCO instances JSON -> ``catdog`` (cat=0, dog=1, matched by category name)
* ``pets``  Oxford-IIIT Pet (VOC XML head boxes + trainval.txt / test.txt) -> ``catdog``
* ``wider`` WIDER FACE (wider_face_split/*_bbx_gt.txt) -> ``face``

Captions (captions dataset: ``DIR/captions.jsonl`` + ``DIR/images/{train,val}/``):

* ``coco-captions`` COCO captions_*.json
* ``cub``           CUB-200 / Oxford-102 captions (Reed et al.'s text_c10/<class>/<name>.txt) with their
  images (images/<class>/<name>.jpg, Oxford-102's flat jpg/, or CUB_200_2011/images)
* ``folder``        a folder of images + captions.jsonl ({"image", "captions"|"caption"[, "split"]})

Command line::

    python -m datasets.convert coco /data/coco --out data/coco_catdog --keep-negatives 500
    python -m datasets.convert pets /data/oxford-iiit-pet --out data/pets_catdog
    python -m datasets.convert wider /data/WIDER --out data/wider_face
    python -m datasets.convert cub /data/cub_200 --out data/cub_captions

Python::

    from datasets.convert import convert
    report = convert("wider", "/data/WIDER", "data/wider_face", val_fraction=0.1)
    print(report.summary())

Rules every converter follows:

* Nothing in ``DIR`` changes unless the conversion succeeds: it writes into
  ``DIR/.converting/`` and moves that into place at the end (an earlier conversion there is
  replaced only then, with ``overwrite``; other files in ``DIR`` stay).
* Images are hard-linked into ``DIR/images/<split>/`` (copied where a link fails, or
  always with ``copy=True``); their file type and extension are kept (.jpg stays .jpg),
  except, in a YOLO dataset, data ultralytics does not train on (a GIF, or a name it does
  not list, such as .gif): re-encoded as PNG and counted (``report.warnings``).
  Names are flattened (``<basename>``; on a clash the parent folder is prefixed).
* Boxes are clipped to the image and written as YOLO ``cls cx cy w h`` normalised,
  6 decimals, by the image size the annotation gives (COCO's width/height, VOC's <size>):
  boxes scale with an image resized after annotating. Where that size differs from the
  file's, it is counted as a warning naming the image. A box that is empty after clipping
  is skipped and counted.
* A photo with an EXIF orientation is shown to the detector turned, as ultralytics reads
  it. Boxes drawn on the turned photo (an annotation size that is the turned one) keep it as
  it is; boxes on the stored pixels (any other size, or none: the public sets' tools ignored
  EXIF) get it re-encoded as PNG without the orientation, counted as a warning.
* Captions are kept as written, without the spaces and line ends around them (COCO's end
  in one); empty ones are dropped and counted.
* Malformed input raises :class:`ConvertError` naming the file and the line (text
  formats) or the record (JSON / XML). Legitimately skippable records (a missing or
  unreadable image, an invalid box, a crowd box, ...) are skipped and COUNTED in the report
  (``report.skipped``: reason -> count; ``report.skipped_files``: reason -> the first few
  files), which is also written to ``DIR/convert_report.json``. Every image is checked
  before it is placed, in every converter: PIL's ``verify()``, and a decode at 1/8 scale
  for JPEGs (verify reads none of their pixels; a truncated download is caught here).
* Splits: an existing train/val split in the source is kept; otherwise the records are
  split by ``val_fraction`` with a seeded shuffle of the sorted record keys
  (deterministic: same input + seed -> same split). Oxford-IIIT Pet's trainval/test
  lists are not such a split: its test images have no head boxes (no XML), so they are
  skipped and counted, and val is drawn from the listed names by ``val_fraction``.
"""

from __future__ import annotations

import gendet_env  # noqa: F401  (offline-safe environment, as every entry point)

import argparse
import inspect
import sys
from pathlib import Path
from typing import Callable

from datasets.convert.captions import convert_coco_captions, convert_cub, convert_folder
from datasets.convert.coco import convert_coco
from datasets.convert.common import (  # noqa: F401  (skip and warning reasons: the keys of report.skipped/warnings)
    SKIP_CROWD, SKIP_DEGENERATE, SKIP_DUPLICATE, SKIP_INVALID_FACE, SKIP_MISSING_IMAGE, SKIP_NEGATIVE,
    SKIP_NO_CAPTION_FILE, SKIP_NO_CAPTIONS, SKIP_NO_USABLE_BOX, SKIP_NO_XML, SKIP_OTHER_YEAR, SKIP_OUTSIDE,
    SKIP_UNKNOWN_IMAGE_ID, SKIP_UNLISTED, SKIP_UNREADABLE_IMAGE, SKIP_UNSPLIT_FILE, SKIP_XML_NO_OBJECTS, WARN_ORIENTATION,
    WARN_REENCODED, WARN_SIZE, ConvertError, ConvertReport, split_keys)
from datasets.convert.pets import convert_pets
from datasets.convert.wider import convert_wider
from datasets.convert.writers import OutputExists

__all__ = [
    "ConvertError",
    "ConvertReport",
    "FORMATS",
    "convert",
    "convert_coco",
    "convert_pets",
    "convert_wider",
    "convert_coco_captions",
    "convert_cub",
    "convert_folder",
    "split_keys",
    "main",
]

FORMATS: dict[str, Callable[..., ConvertReport]] = {
    "coco": convert_coco,
    "pets": convert_pets,
    "wider": convert_wider,
    "coco-captions": convert_coco_captions,
    "cub": convert_cub,
    "folder": convert_folder,
}


def convert(fmt: str, src, out, **options) -> ConvertReport:
    """Convert ``src`` in format ``fmt`` (one of FORMATS) into ``out``; see the per-format
    functions for their options. Writes ``out/convert_report.json`` and returns the report."""
    try:
        func = FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}") from None
    accepted = set(inspect.signature(func).parameters) - {"src", "out"}
    unknown = set(options) - accepted
    if unknown:
        raise TypeError(f"format {fmt!r} does not take {', '.join(sorted(unknown))} "
                        f"(it takes {', '.join(sorted(accepted))})")
    # checked here, not only in split_keys: a source with its own train/val split never
    # reaches split_keys, and a bad value should not pass silently there either
    vf = options.get("val_fraction", 0.0)
    if isinstance(vf, bool) or not isinstance(vf, (int, float)) or not 0.0 <= vf < 1.0:
        raise ValueError(f"val_fraction must be a number in [0, 1), got {vf!r}")
    return func(src, out, **options)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m datasets.convert",
        description="Convert a real dataset into gendet's formats (datasets/FORMATS.md): "
                    "coco/pets -> YOLO catdog, wider -> YOLO face, coco-captions/cub/folder -> captions dataset.",
        epilog="what each format reads under SRC:\n"
               "  coco           annotations/instances_{train,val}2017.json + train2017/, val2017/ (the newest year\n"
               "                 when several are there); or one json with --images\n"
               "  pets           images/*.jpg, annotations/xmls/*.xml (head boxes), annotations/trainval.txt + test.txt\n"
               "  wider          WIDER_{train,val}/images/<event>/*.jpg + wider_face_split/wider_face_{train,val}_bbx_gt.txt\n"
               "  coco-captions  annotations/captions_{train,val}2017.json + train2017/, val2017/\n"
               "  cub            text_c10/<class>/<name>.txt (Reed et al.; or text/) with images/<class>/<name>.jpg,\n"
               "                 Oxford-102's flat jpg/, or CUB_200_2011/images, in or beside SRC (or --images);\n"
               "                 trainvalclasses.txt + testclasses.txt, where present, split by class\n"
               "  folder         captions.jsonl rows {\"image\": path, \"captions\": [...] or \"caption\": \"...\"[, \"split\"]}\n"
               "--out may not be SRC or a folder holding it (it replaces the images/, labels/ and captions.jsonl there).\n\n"
               "examples:\n"
               "  python -m datasets.convert coco /data/coco --out data/coco_catdog --keep-negatives 500\n"
               "  python -m datasets.convert coco instances_val2017.json --images /data/coco/val2017 --out d\n"
               "  python -m datasets.convert pets /data/oxford-iiit-pet --out data/pets_catdog\n"
               "  python -m datasets.convert wider /data/WIDER --out data/wider_face\n"
               "  python -m datasets.convert cub /data/birds --out data/cub_captions --val-fraction 0.05\n"
               "  python -m datasets.convert folder my_images/ --out data/my_captions",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("format", choices=list(FORMATS), help="source format")
    p.add_argument("src", help="source root (or, for coco/coco-captions, one json file)")
    p.add_argument("--out", required=True, help="output dataset folder")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="val share when the source has no train/val split of its own (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the deterministic split (default 0)")
    p.add_argument("--images", default=None,
                   help="coco/coco-captions: image folder for a json given as SRC; cub: the image folder")
    p.add_argument("--keep-negatives", type=int, default=None, metavar="N",
                   help="coco: keep N images without cats/dogs as negatives (default 0)")
    p.add_argument("--copy", action="store_true", help="copy images instead of hard-linking them")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out (once the new one is complete)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    def error(message: str) -> int:
        print(f"error: {message}", file=sys.stderr)
        return 2

    options = {"val_fraction": args.val_fraction, "seed": args.seed, "copy": args.copy,
               "overwrite": args.overwrite, "progress": not args.quiet}
    if args.images is not None:
        options["images"] = args.images
    if args.keep_negatives is not None:
        options["keep_negatives"] = args.keep_negatives
    accepted = inspect.signature(FORMATS[args.format]).parameters
    for name in ("images", "keep_negatives"):
        if name in options and name not in accepted:
            return error(f"--{name.replace('_', '-')} does not apply to {args.format}")
    # the options' own checks, worded for the command line (convert() names the Python keywords)
    if not 0.0 <= args.val_fraction < 1.0:
        return error(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    if (args.keep_negatives or 0) < 0:
        return error(f"--keep-negatives must be >= 0, got {args.keep_negatives}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        return error(f"{args.out}: --out exists and is not a folder")
    try:
        report = convert(args.format, args.src, args.out, **options)
    except OutputExists as e:
        return error(f"{e.path}: --out already holds {', '.join(e.existing)}; pass --overwrite to replace them")
    except (ConvertError, ValueError, OSError) as e:  # OSError: unreadable source, unwritable --out
        return error(str(e))
    except KeyboardInterrupt:
        print(f"\ninterrupted: {args.out} is as it was (a conversion is written beside its files and put in "
              "place when done); run the same command again", file=sys.stderr)
        return 130
    print(report.summary())
    print(f"  report: {Path(args.out) / 'convert_report.json'}")
    return 0
