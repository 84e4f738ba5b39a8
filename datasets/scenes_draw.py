"""Drawing for `datasets.scenes`: backgrounds and cat / dog / face icons.

Objects are drawn SUPERSAMPLE times larger on a transparent layer and reduced
with a box filter, so even 15-pixel icons keep smooth edges. Inside the
draw_* functions coordinates are fractions (0..1) of the layer, which keeps
every icon independent of its pixel size.

Recognition cues, kept strong on purpose so a person (and a detector) can tell
the classes apart at a glance:
  cat  - pointed triangular ears on top, almond eyes with slit pupils, small
         pink nose, whiskers reaching past the cheeks
  dog  - floppy ears hanging down the sides, long light snout, big black nose,
         round dark eyes, often a pink tongue
  face - skin-coloured oval, hair on top, eyebrows, eyes with whites, nose,
         red mouth, small ears at the sides, no fur
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

SUPERSAMPLE = 2
ALPHA_CUT = 24  # fainter edge pixels are cleared, so the tight box covers every drawn pixel

# Named colours. Cats and dogs: fur. Faces: hair (their "color" in objects.jsonl).
FUR_RGB = {
    "black": (34, 32, 34),
    "white": (238, 236, 230),
    "gray": (138, 138, 144),
    "orange": (226, 128, 42),
    "brown": (122, 78, 42),
}
HAIR_RGB = {
    "black": (28, 22, 20),
    "brown": (104, 62, 30),
    "blond": (232, 196, 104),
    "red": (172, 66, 28),
    "gray": (168, 168, 170),
}
SKIN_RGB = [(255, 224, 196), (241, 194, 155), (224, 172, 120), (198, 134, 86), (150, 96, 56), (96, 62, 40)]
CAT_EYES = [(120, 190, 60), (220, 190, 40), (230, 150, 40), (90, 170, 210)]
HUMAN_EYES = [(90, 56, 30), (60, 110, 170), (80, 130, 80), (40, 30, 25)]
HAIR_STYLES = ("short", "long", "curly", "bald", "bun")
BACKGROUNDS = ("flat", "gradient", "noise", "stripes", "checker", "clutter")
BACKGROUND_WEIGHTS = (0.15, 0.2, 0.15, 0.15, 0.1, 0.25)
PINK = (236, 140, 150)


# ---------------------------------------------------------------- colour helpers
def shade(rgb, f: float) -> tuple:
    return tuple(int(min(255, max(0, c * f))) for c in rgb)


def mix(a, b, t: float) -> tuple:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


def jitter(rgb, rng, amount: int = 12) -> tuple:
    return tuple(int(min(255, max(0, c + int(rng.integers(-amount, amount + 1))))) for c in rgb)


def luminance(rgb) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def outline_of(rgb) -> tuple:
    # Dark fur gets a near-black line, light fur a darker shade of itself.
    return (12, 12, 12) if luminance(rgb) < 60 else shade(rgb, 0.5)


def random_color(rng) -> tuple:
    h, s, v = rng.random(), rng.uniform(0.15, 0.8), rng.uniform(0.25, 0.95)
    i, f = int(h * 6) % 6, h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return (int(r * 255), int(g * 255), int(b * 255))


# ---------------------------------------------------------------- pen
class Pen:
    """ImageDraw with coordinates and line widths as fractions of the layer."""

    def __init__(self, img: Image.Image):
        self.d = ImageDraw.Draw(img)
        self.w, self.h = img.size

    def pt(self, x, y):
        return (x * self.w, y * self.h)

    def lw(self, f: float) -> int:
        return max(1, round(f * self.w))

    def ellipse(self, x0, y0, x1, y1, fill=None, outline=None, width=0.0):
        self.d.ellipse([self.pt(x0, y0), self.pt(x1, y1)], fill=fill, outline=outline,
                       width=self.lw(width) if outline else 0)

    def circle(self, cx, cy, r, **kw):
        ry = r * self.w / self.h  # round on screen even when the layer is not square
        self.ellipse(cx - r, cy - ry, cx + r, cy + ry, **kw)

    def poly(self, pts, fill=None, outline=None, width=0.0):
        self.d.polygon([self.pt(x, y) for x, y in pts], fill=fill, outline=outline,
                       width=self.lw(width) if outline else 0)

    def line(self, pts, fill, width):
        self.d.line([self.pt(x, y) for x, y in pts], fill=fill, width=self.lw(width), joint="curve")

    def chord(self, x0, y0, x1, y1, start, end, fill, outline=None, width=0.0):
        self.d.chord([self.pt(x0, y0), self.pt(x1, y1)], start, end, fill=fill, outline=outline,
                     width=self.lw(width) if outline else 0)


def oval_pts(cx, cy, rx, ry, angle_deg=0.0, n=28):
    a = math.radians(angle_deg)
    ca, sa = math.cos(a), math.sin(a)
    pts = []
    for k in range(n):
        t = 2 * math.pi * k / n
        x, y = rx * math.cos(t), ry * math.sin(t)
        pts.append((cx + x * ca - y * sa, cy + x * sa + y * ca))
    return pts


def almond_pts(cx, cy, rx, ry, n=8):
    """Lens shape with pointed corners: a cat's eye."""
    top = [(cx - rx + 2 * rx * k / n, cy - ry * math.sin(math.pi * k / n)) for k in range(n + 1)]
    bottom = [(cx + rx - 2 * rx * k / n, cy + ry * math.sin(math.pi * k / n)) for k in range(1, n)]
    return top + bottom


# ---------------------------------------------------------------- object parameters
def sample_params(label: str, color: str, rng) -> dict:
    """Geometry and colours of one object; drawing from it is deterministic."""
    p = {"label": label, "color": color, "angle": float(rng.uniform(-18, 18)),
         "aspect": float(rng.uniform(0.85, 1.15))}
    if label == "cat":
        p.update(rgb=jitter(FUR_RGB[color], rng), head_w=rng.uniform(0.72, 0.86),
                 ear_h=rng.uniform(0.2, 0.3), ear_tilt=rng.uniform(-0.05, 0.04),
                 eye_dx=rng.uniform(0.14, 0.18), eye=CAT_EYES[rng.integers(len(CAT_EYES))],
                 tabby=bool(rng.random() < 0.45 and color != "black"),
                 muzzle=bool(rng.random() < 0.35 and color != "white"))
    elif label == "dog":
        p.update(rgb=jitter(FUR_RGB[color], rng), head_w=rng.uniform(0.5, 0.62),
                 ear_len=rng.uniform(0.24, 0.34), ear_angle=rng.uniform(2, 24),
                 ear_dark=rng.uniform(0.55, 0.85), snout=rng.uniform(0.8, 1.15),
                 tongue=bool(rng.random() < 0.6), patch=bool(rng.random() < 0.25))
    else:
        skin = SKIN_RGB[rng.integers(len(SKIN_RGB))]
        p.update(rgb=jitter(HAIR_RGB[color], rng, 8), skin=jitter(skin, rng, 8),
                 style=HAIR_STYLES[rng.integers(len(HAIR_STYLES))], face_w=rng.uniform(0.5, 0.6),
                 eye=HUMAN_EYES[rng.integers(len(HUMAN_EYES))], smile=bool(rng.random() < 0.5),
                 glasses=bool(rng.random() < 0.15), part=rng.uniform(-0.12, 0.12))
    return p


def main_rgb(p: dict) -> tuple:
    """The colour covering most of the object (for the contrast check)."""
    return p["skin"] if p["label"] == "face" else p["rgb"]


# ---------------------------------------------------------------- icons
def draw_cat(pen: Pen, p: dict) -> None:
    fur, hw = p["rgb"], p["head_w"]
    dark = outline_of(fur)
    ow = 0.025
    for s in (-1, 1):  # pointed ears, drawn first so the head covers their base
        tip = (0.5 + s * (hw / 2 - 0.04 + p["ear_tilt"]), max(0.02, 0.36 - p["ear_h"]))
        outer, inner = (0.5 + s * (hw / 2 - 0.005), 0.55), (0.5 + s * 0.06, 0.36)
        pen.poly([outer, tip, inner], fill=fur, outline=dark, width=ow)
        c = ((outer[0] + tip[0] + inner[0]) / 3, (outer[1] + tip[1] + inner[1]) / 3 + 0.03)
        pen.poly([(c[0] + (x - c[0]) * 0.5, c[1] + (y - c[1]) * 0.55) for x, y in (outer, tip, inner)],
                 fill=mix(fur, PINK, 0.65))
    pen.ellipse(0.5 - hw / 2, 0.3, 0.5 + hw / 2, 0.95, fill=fur, outline=dark, width=ow)
    if p["tabby"]:
        stripe = shade(fur, 0.6)
        for dx in (-0.08, 0, 0.08):
            pen.line([(0.5 + dx, 0.33), (0.5 + dx * 1.2, 0.44)], fill=stripe, width=0.03)
    if p["muzzle"]:
        pen.ellipse(0.34, 0.66, 0.66, 0.9, fill=mix(fur, (250, 250, 250), 0.85))
    for s in (-1, 1):  # almond eyes with slit pupils
        cx = 0.5 + s * p["eye_dx"]
        pen.poly(almond_pts(cx, 0.56, 0.085, 0.055), fill=p["eye"], outline=(15, 15, 15), width=0.012)
        pen.ellipse(cx - 0.014, 0.515, cx + 0.014, 0.605, fill=(8, 8, 8))
    pen.poly([(0.45, 0.69), (0.55, 0.69), (0.5, 0.75)], fill=PINK, outline=shade(PINK, 0.6), width=0.008)
    mouth = (15, 15, 15) if luminance(fur) > 60 else (200, 200, 200)
    pen.line([(0.42, 0.8), (0.46, 0.82), (0.5, 0.79), (0.54, 0.82), (0.58, 0.8)], fill=mouth, width=0.014)
    pen.line([(0.5, 0.75), (0.5, 0.79)], fill=mouth, width=0.014)
    whisker = (245, 245, 245) if luminance(fur) < 110 else (25, 25, 25)
    for s in (-1, 1):  # whiskers reach past the cheeks: a strong cat cue
        for k, y_end in enumerate((0.66, 0.74, 0.82)):
            pen.line([(0.5 + s * 0.13, 0.73 + 0.02 * k), (0.5 + s * 0.49, y_end)], fill=whisker, width=0.012)


def draw_dog(pen: Pen, p: dict) -> None:
    fur, hw = p["rgb"], p["head_w"]
    dark = outline_of(fur)
    ear = shade(fur, p["ear_dark"]) if luminance(fur) > 60 else mix(fur, (90, 70, 60), 0.3)
    muzzle = mix(fur, (245, 240, 230), 0.45)
    ow = 0.025
    pen.ellipse(0.5 - hw / 2, 0.08, 0.5 + hw / 2, 0.78, fill=fur, outline=dark, width=ow)
    if p["patch"]:
        pen.circle(0.5 - 0.13, 0.38, 0.11, fill=shade(fur, 0.55) if luminance(fur) > 60 else (110, 80, 50))
    sn = p["snout"]  # long, light snout reaching below the head
    pen.ellipse(0.5 - 0.17 * sn, 0.47, 0.5 + 0.17 * sn, 0.86, fill=muzzle, outline=dark, width=ow)
    if p["tongue"]:
        pen.ellipse(0.44, 0.72, 0.56, 0.97, fill=(232, 92, 112), outline=(150, 40, 60), width=0.012)
        pen.line([(0.5, 0.77), (0.5, 0.9)], fill=(170, 50, 70), width=0.01)
    pen.line([(0.5, 0.58), (0.5, 0.7)], fill=(20, 20, 20), width=0.016)
    pen.line([(0.4, 0.72), (0.45, 0.74), (0.5, 0.7), (0.55, 0.74), (0.6, 0.72)], fill=(20, 20, 20), width=0.016)
    pen.ellipse(0.4, 0.5, 0.6, 0.62, fill=(18, 16, 16))  # big dark nose
    pen.ellipse(0.45, 0.515, 0.5, 0.545, fill=(120, 120, 120))
    for s in (-1, 1):  # floppy ears hanging down the sides of the head
        cx = 0.5 + s * (hw / 2 - 0.01)
        pen.poly(oval_pts(cx, 0.14 + p["ear_len"], 0.095, p["ear_len"], -s * p["ear_angle"]),
                 fill=ear, outline=shade(ear, 0.5) if luminance(ear) > 40 else (8, 8, 8), width=ow)
    for s in (-1, 1):  # round dark eyes with a highlight
        cx = 0.5 + s * 0.12
        pen.circle(cx, 0.37, 0.052, fill=(30, 22, 18), outline=(5, 5, 5), width=0.008)
        pen.circle(cx + 0.018, 0.355, 0.016, fill=(250, 250, 250))


def draw_face(pen: Pen, p: dict) -> None:
    hair, skin, fw, style = p["rgb"], p["skin"], p["face_w"], p["style"]
    skin_line = shade(skin, 0.7)
    x0, x1 = 0.5 - fw / 2, 0.5 + fw / 2
    if style == "long":  # hair falling behind the head to the shoulders
        pen.d.rounded_rectangle([pen.pt(x0 - 0.08, 0.06), pen.pt(x1 + 0.08, 0.92)],
                                radius=pen.lw(0.2), fill=hair)
    if style in ("short", "long", "bun", "curly"):  # hair framing the top of the head
        pen.ellipse(x0 - 0.035, 0.05, x1 + 0.035, 0.72, fill=hair)
    for s in (-1, 1):  # ears at the sides
        cx = 0.5 + s * (fw / 2 + 0.01)
        pen.ellipse(cx - 0.05, 0.42, cx + 0.05, 0.6, fill=skin, outline=skin_line, width=0.012)
    pen.ellipse(x0, 0.1, x1, 0.96, fill=skin, outline=skin_line, width=0.015)
    part = p["part"]
    if style in ("short", "long", "bun"):  # swept fringe with a side parting
        top = [(0.5 + (fw / 2) * math.cos(t), 0.4 - 0.3 * math.sin(t))
               for t in np.linspace(0, math.pi, 9)]
        pen.poly(top + [(x0, 0.42), (x0 + 0.08, 0.3), (0.5 + part, 0.21), (x1 - 0.1, 0.3), (x1, 0.38)],
                 fill=hair)
    if style == "bun":
        pen.circle(0.5, 0.06, 0.08, fill=hair)
    elif style == "curly":
        for k in range(9):
            t = math.pi + math.pi * k / 8
            pen.circle(0.5 + (fw / 2) * math.cos(t), 0.3 + 0.2 * math.sin(t), 0.075, fill=hair)
    elif style == "bald":  # only a fringe of hair above the ears
        for s in (-1, 1):
            pen.ellipse(0.5 + s * fw / 2 - 0.05, 0.28, 0.5 + s * fw / 2 + 0.05, 0.46, fill=hair)
    brow = shade(hair, 0.6) if luminance(hair) > 120 else hair
    for s in (-1, 1):
        cx = 0.5 + s * 0.115
        pen.line([(cx - s * 0.06, 0.41), (cx + s * 0.06, 0.395)], fill=brow, width=0.025)
        pen.ellipse(cx - 0.065, 0.445, cx + 0.065, 0.515, fill=(252, 252, 252), outline=(40, 30, 30), width=0.01)
        pen.circle(cx, 0.48, 0.03, fill=p["eye"])
        pen.circle(cx, 0.48, 0.013, fill=(5, 5, 5))
        if p["glasses"]:
            pen.circle(cx, 0.48, 0.095, outline=(30, 30, 30), width=0.014)
    if p["glasses"]:
        pen.line([(0.475, 0.47), (0.525, 0.47)], fill=(30, 30, 30), width=0.014)
    pen.line([(0.5, 0.52), (0.475, 0.63), (0.52, 0.645)], fill=shade(skin, 0.62), width=0.016)
    lips = (176, 58, 70)
    if p["smile"]:
        pen.chord(0.4, 0.68, 0.6, 0.8, 0, 180, fill=lips)
        pen.chord(0.42, 0.68, 0.58, 0.75, 0, 180, fill=(250, 250, 250))
    else:
        pen.ellipse(0.42, 0.72, 0.58, 0.78, fill=lips)


DRAW = {"cat": draw_cat, "dog": draw_dog, "face": draw_face}


def render_object(p: dict, w: int, h: int) -> Image.Image:
    """RGBA icon of about w x h pixels, cropped to its tight (drawn) box."""
    big = Image.new("RGBA", (w * SUPERSAMPLE, h * SUPERSAMPLE), (0, 0, 0, 0))
    DRAW[p["label"]](Pen(big), p)
    if abs(p["angle"]) > 0.5:
        big = big.rotate(p["angle"], resample=Image.Resampling.BICUBIC, expand=True)
    small = big.resize((big.width // SUPERSAMPLE, big.height // SUPERSAMPLE), Image.Resampling.BOX)
    alpha = small.getchannel("A").point([0 if a < ALPHA_CUT else a for a in range(256)])
    small.putalpha(alpha)
    bbox = alpha.getbbox()
    return small.crop(bbox) if bbox else small


# ---------------------------------------------------------------- backgrounds
def _mix_map(t: np.ndarray, c1, c2) -> np.ndarray:
    a, b = np.asarray(c1, np.float32), np.asarray(c2, np.float32)
    return a + (b - a) * t[..., None]


def draw_background(size: int, rng, kinds: tuple[str, ...] = BACKGROUNDS) -> tuple[str, np.ndarray]:
    """(kind, HxWx3 uint8), the kind drawn from `kinds` (their BACKGROUND_WEIGHTS, renormalised).
    Clutter is rectangles, circles and lines, never an icon."""
    weights = np.array([BACKGROUND_WEIGHTS[BACKGROUNDS.index(k)] for k in kinds])
    kind = kinds[rng.choice(len(kinds), p=weights / weights.sum())]  # all six: the same draws as ever
    c1, c2 = random_color(rng), random_color(rng)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    theta = rng.uniform(0, 2 * math.pi)
    along = xx * math.cos(theta) + yy * math.sin(theta)
    if kind == "flat":
        img = _mix_map(np.zeros_like(xx), c1, c2)
    elif kind in ("gradient", "clutter"):
        t = (along - along.min()) / max(1e-6, float(along.max() - along.min()))
        flat_base = kind == "clutter" and rng.random() < 0.5  # clutter sits on flat or gradient
        img = _mix_map(t * 0 if flat_base else t, c1, c2)
    elif kind == "noise":
        k = int(rng.integers(3, 9))
        grid = Image.fromarray((rng.random((k, k)) * 255).astype(np.uint8))
        t = np.asarray(grid.resize((size, size), Image.Resampling.BICUBIC), np.float32) / 255
        img = _mix_map(t, c1, c2) + rng.normal(0, 10, (size, size, 1)).astype(np.float32)
    elif kind == "stripes":
        period = rng.uniform(0.06, 0.3)
        t = np.clip(np.sin(2 * math.pi * along / period) * 2.5 + 0.5, 0, 1)
        img = _mix_map(t, c1, c2)
    else:  # checker
        cell = int(rng.integers(max(3, size // 16), max(4, size // 4)))
        iy, ix = np.mgrid[0:size, 0:size]
        img = _mix_map(((ix // cell + iy // cell) % 2).astype(np.float32), c1, c2)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if kind == "clutter":
        img = _draw_clutter(img, rng)
    return kind, img


def _draw_clutter(img: np.ndarray, rng) -> np.ndarray:
    size = img.shape[0]
    pil = Image.fromarray(img)
    d = ImageDraw.Draw(pil)
    for _ in range(int(rng.integers(4, 13))):
        shape, col = int(rng.integers(3)), random_color(rng)
        x, y = rng.uniform(-0.1, 1.0, 2) * size
        w, h = rng.uniform(0.05, 0.4, 2) * size
        if shape == 0:
            d.rectangle([x, y, x + w, y + h], fill=col)
        elif shape == 1:
            d.ellipse([x, y, x + w, y + w], fill=col)
        else:
            d.line([x, y, x + w * rng.choice([-1, 1]), y + h], fill=col, width=int(rng.integers(1, 4)))
    return np.asarray(pil)
