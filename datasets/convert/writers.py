"""The two outputs a converter writes: a YOLO detection dataset or a captions dataset."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from datasets.convert.common import (
    SKIP_MISSING_IMAGE, SKIP_NO_CAPTIONS, SKIP_NO_USABLE_BOX, SKIP_OUTSIDE, SKIP_UNREADABLE_IMAGE, SPLITS,
    TASK_NAMES, WARN_ORIENTATION, WARN_REENCODED, WARN_SIZE, YOLO_FORMATS, YOLO_SUFFIXES, ConvertError, ConvertReport,
    ImageInfo, image_info)
from datasets.signals import ctrl_c_held


class OutputExists(ConvertError):
    """The output folder holds an earlier conversion and overwrite is off."""

    def __init__(self, out: Path, existing: list[str]):
        self.existing = existing
        super().__init__(f"output folder already holds {', '.join(existing)}; pass overwrite=True to replace them",
                         out)


class Output:
    """Common output handling: the folder, unique image names, linking/copying.

    Everything is written into a staging folder inside the output (STAGING) and moved into place
    by finish(): a conversion that stops on a malformed file leaves the output as it was (an
    earlier conversion there included, even with overwrite). Use it as a context manager, so an
    error also removes the staging folder."""

    OWNED = ("images", "labels", "data.yaml", "captions.jsonl", "convert_report.json")
    STAGING = ".converting"
    REPLACED = ".replaced"  # the earlier conversion's files, on their way out

    def __init__(self, out, report: ConvertReport, *, copy: bool = False, overwrite: bool = False):
        self.final = Path(out)
        self.out = self.final  # checked as the output first; the staging folder once they pass
        self.report = report
        self.copy = copy
        self._used: dict[str, set[str]] = {s: set() for s in SPLITS}
        if self.out.exists() and not self.out.is_dir():
            raise ConvertError("the output path exists and is not a folder", self.out)
        src = Path(report.src).resolve()
        root, out_abs = (src if src.is_dir() else src.parent), self.out.resolve()
        if out_abs == root or root.is_relative_to(out_abs):  # replacing its images/ would delete the source's
            raise ConvertError(f"the output folder is the source {report.src} or holds it; choose an output "
                               "folder outside the source", self.out)
        existing = [name for name in self.OWNED if (self.out / name).exists()]
        if existing and not overwrite:
            raise OutputExists(self.out, existing)
        if existing and not (self.out / "convert_report.json").is_file():  # not a conversion: never deleted
            raise ConvertError(f"overwriting replaces an earlier conversion (one writes convert_report.json), but "
                               f"{', '.join(existing)} here came from elsewhere; choose another output folder",
                               self.out)
        self._made_final = not self.final.exists()
        self.out = self.final / self.STAGING
        for leftover in (self.out, self.final / self.REPLACED):  # left by a conversion that was killed
            shutil.rmtree(leftover, ignore_errors=True)
        for split in SPLITS:
            (self.out / "images" / split).mkdir(parents=True, exist_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None and self.out != self.final:  # the output stays as it was: drop what this conversion wrote
            shutil.rmtree(self.out, ignore_errors=True)
            if self._made_final and self.final.is_dir() and not any(self.final.iterdir()):
                self.final.rmdir()

    def _commit(self) -> None:
        """Replace the output's earlier files with the staged ones (overwrite was checked at the start):
        renames, then the earlier files deleted, with Ctrl-C held off till the end. The output holds
        the earlier conversion or this one, whole (the earlier images used to go first, and a Ctrl-C
        left part of them under the earlier captions). convert_report.json, the mark of a
        conversion, goes first and comes last."""
        replaced = self.final / self.REPLACED
        shutil.rmtree(replaced, ignore_errors=True)
        replaced.mkdir()
        with ctrl_c_held():
            for name in reversed(self.OWNED):
                if (self.final / name).exists() or (self.final / name).is_symlink():
                    os.replace(self.final / name, replaced / name)
            for name in self.OWNED:
                if (self.out / name).exists():
                    os.replace(self.out / name, self.final / name)
            self.out.rmdir()
            self.out = self.final
            shutil.rmtree(replaced)  # held off too: a Ctrl-C here would say "as it was" of a conversion in place

    def _unique_name(self, split: str, src: Path, ext: str | None = None) -> str:
        used = self._used[split]
        stem, ext = src.stem, ext or src.suffix.lower() or ".jpg"
        candidates = [stem]
        parents = [p for p in src.parent.parts[-2:] if p not in ("/", "")]
        if parents:
            candidates.append(f"{parents[-1]}__{stem}")
        if len(parents) > 1:
            candidates.append(f"{parents[0]}__{parents[1]}__{stem}")
        for cand in candidates:
            cand = re.sub(r"[^\w.\-]+", "_", cand)
            if cand not in used:
                used.add(cand)
                return cand + ext
        base, k = re.sub(r"[^\w.\-]+", "_", stem), 1
        while f"{base}_{k}" in used:
            k += 1
        used.add(f"{base}_{k}")
        return f"{base}_{k}{ext}"

    def place_image(self, split: str, src: Path, as_png: bool = False) -> str:
        """Link (or copy, or with as_png re-encode) src under images/<split>/; returns the path
        relative to out."""
        name = self._unique_name(split, src, ".png" if as_png else None)
        dst = self.out / "images" / split / name
        if dst.exists() or dst.is_symlink():
            dst.unlink()
        if as_png:
            from PIL import Image

            with Image.open(src) as im:
                im.convert("RGBA" if "A" in im.getbands() else "RGB").save(dst, format="PNG")
        elif self.copy:
            shutil.copy2(src, dst)
        else:
            try:  # the file itself: a link to a symlink is a link that may point nowhere from here
                os.link(src.resolve(), dst)
            except OSError:
                shutil.copy2(src, dst)
        return f"images/{split}/{name}"

    def readable(self, image: Path) -> ImageInfo | None:
        """The image's size, format and orientation, or None after counting it as skipped (missing
        or unreadable)."""
        if not image.is_file():
            self.report.skip(SKIP_MISSING_IMAGE, file=image)
            return None
        info = image_info(image)
        if info is None:
            self.report.skip(SKIP_UNREADABLE_IMAGE, file=image)
        return info

    def _finish_report(self) -> ConvertReport:
        self.report.write(self.out / "convert_report.json")
        self._commit()
        return self.report


class YoloWriter(Output):
    """Writes a YOLO dataset (FORMATS.md): images/, labels/, data.yaml."""

    def __init__(self, out, report: ConvertReport, task: str, **kw):
        super().__init__(out, report, **kw)
        self.task = task
        self.names = TASK_NAMES[task]
        for split in SPLITS:
            (self.out / "labels" / split).mkdir(parents=True, exist_ok=True)

    def label_lines(self, boxes, width: int, height: int, image: Path | None = None) -> list[str]:
        """boxes: (cls, x1, y1, x2, y2) in pixels (x2/y2 exclusive) -> YOLO lines; clips, counts
        (naming `image` where a box is dropped)."""
        lines = []
        for cls, x1, y1, x2, y2 in boxes:
            cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
            cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
            if cx2 - cx1 <= 0 or cy2 - cy1 <= 0:
                self.report.skip(SKIP_OUTSIDE, file=image)
                continue
            if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
                self.report.boxes_clipped += 1
            cx, cy = (cx1 + cx2) / 2 / width, (cy1 + cy2) / 2 / height
            w, h = (cx2 - cx1) / width, (cy2 - cy1) / height
            lines.append(f"{int(cls)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
        return lines

    def add(self, split: str, image: Path, width: int | None, height: int | None, boxes,
            *, negative: bool = False) -> bool:
        """Write one image + its label file. ``negative`` marks an image that has no objects
        at all; an image that had objects but whose boxes were all dropped is skipped."""
        info = self.readable(image)
        if info is None:
            return False
        # ultralytics shows the model the image turned by its EXIF orientation. An annotation of
        # the turned size was drawn on it; any other was drawn on the stored pixels (the public
        # sets' tools ignored EXIF), and the image then goes in without its orientation
        shown = bool(width and height) and (width, height) == info.shown_size != info.size
        drop_orientation = info.orientation != 1 and not shown
        if not width or not height:
            width, height = info.size
        elif (width, height) != info.size and not shown:
            # e.g. images resized after annotating: boxes scale with them, so the annotation's
            # size is the one they are normalised by; a wrong annotation shows here
            self.report.warn(WARN_SIZE, file=image)
        lines = [] if negative else self.label_lines(boxes, width, height, image)
        if not negative and not lines:
            self.report.skip(SKIP_NO_USABLE_BOX, file=image)
            return False
        as_png = info.format not in YOLO_FORMATS or image.suffix.lower() not in YOLO_SUFFIXES or drop_orientation
        if as_png:
            self.report.warn(WARN_ORIENTATION if drop_orientation else WARN_REENCODED, file=image)
        rel = self.place_image(split, image, as_png)
        label = self.out / "labels" / split / (Path(rel).stem + ".txt")
        label.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        self.report.images[split] += 1
        self.report.boxes[split] += len(lines)
        if not lines:
            self.report.negatives[split] += 1
        for line in lines:
            self.report.boxes_per_class[int(line.split(" ", 1)[0])] += 1
        return True

    def finish(self) -> ConvertReport:
        import yaml

        data = {"train": "images/train", "val": "images/val",
                "names": dict(self.names), "task_name": self.task}
        (self.out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        for split in SPLITS:
            if not self.report.images[split]:
                self.report.notes.append(f"the {split} split is empty")
        return self._finish_report()


class CaptionsWriter(Output):
    """Writes a captions dataset (FORMATS.md): images/{train,val}/ + captions.jsonl."""

    def __init__(self, out, report: ConvertReport, **kw):
        super().__init__(out, report, **kw)
        self.rows: list[dict] = []

    def add(self, split: str, image: Path, captions: list[str]) -> bool:
        given = len(captions)
        captions = [c.strip() for c in captions if c and c.strip()]
        if len(captions) < given:
            self.report.warn("empty captions dropped", file=image, n=given - len(captions))
        if not captions:
            self.report.skip(SKIP_NO_CAPTIONS, file=image)
            return False
        if self.readable(image) is None:
            return False
        rel = self.place_image(split, image)
        self.rows.append({"image": rel, "split": split, "captions": captions})
        self.report.images[split] += 1
        self.report.captions[split] += len(captions)
        return True

    def finish(self) -> ConvertReport:
        with open(self.out / "captions.jsonl", "w", encoding="utf-8") as f:
            for row in self.rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        for split in SPLITS:
            if not self.report.images[split]:
                self.report.notes.append(f"the {split} split is empty")
        return self._finish_report()
