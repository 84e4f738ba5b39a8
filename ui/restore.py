"""A PNG's gendet settings as values for the Generate form's widgets."""

from __future__ import annotations

# the widgets' ranges (a value outside a slider's range stops the page)
SEED_MAX = 2**31 - 1
GUIDANCE = (1.0, 10.0)
TRUNCATION = (0.5, 1.0)
STRENGTH = (0.01, 1.0)


def shown(value) -> str:
    """A number as a message shows it: an integer whole (":g" wrote seed 2**40 as 1.09951e+12)."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def form_values(settings: dict, defaults: dict, default_steps: int, most_steps: int) -> tuple[dict, list[str]]:
    """(widget values, what had to move): each setting as its widget takes it, moved into the widget's
    range where a CLI run used a value the form cannot show (guidance 0.5, 200 steps), and said so.
    A value of the wrong type raises TypeError or ValueError."""
    moved = []

    def within(value, low, high, name):
        kept = min(max(value, low), high)
        if kept != value:
            moved.append(f"{name} {shown(value)} is outside this form's {shown(low)}-{shown(high)}: set to {shown(kept)}")
        return kept

    values = {"prompt": str(settings.get("prompt", "")),
              "seed": within(int(settings.get("seed", 0)), 0, SEED_MAX, "seed"), "random_seed": False,
              "steps": within(int(settings.get("steps", default_steps)), 1, most_steps, "steps"),
              "guidance": within(float(settings.get("guidance_scale", defaults["guidance_scale"])), *GUIDANCE,
                                 "guidance"),
              "truncation": within(float(settings.get("truncation", defaults["truncation"])), *TRUNCATION,
                                   "truncation"),
              "purity": bool(settings.get("purity", defaults["purity"]))}
    if "init_image" in settings:  # an edit: its strength comes back; the image itself must be uploaded again
        if "filter_ratio" in settings:  # on the slider's grid of 0.01
            values["strength"] = round(within(float(settings["filter_ratio"]), *STRENGTH, "strength"), 2)
        values["blend"] = "mask" in settings and "filter_ratio" in settings
    return values, moved
