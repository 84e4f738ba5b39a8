"""What the app has loaded: model paths (sidebar), cached models, the device lock.

Defaults are the bundled demo models in models/demo/; GENDET_GENERATOR, GENDET_CATDOG and
GENDET_FACE override them (tests point these at tiny models). Models load once per
process (st.cache_resource); all model work goes through `device_lock()` so two browser
tabs generating at once run one after the other instead of fighting over the device.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

import gendet_env

DEMO = gendet_env.ROOT / "models" / "demo"


def defaults() -> dict[str, str]:
    return {"generator": os.environ.get("GENDET_GENERATOR", str(DEMO / "generator")),
            "catdog": os.environ.get("GENDET_CATDOG", str(DEMO / "catdog.pt")),
            "face": os.environ.get("GENDET_FACE", str(DEMO / "face.pt"))}
MISSING_HELP = ("Build the demo bundle with `make demo-models` (CPU profile) or give the path of a trained "
                "model in the sidebar.")


@st.cache_resource
def _device() -> threading.Lock:
    return threading.Lock()


@st.cache_resource
def _holder() -> dict:
    """Which browser session holds the device: a run waiting behind its own session's older run
    (stopped by a widget, finishing its step) is not waiting for "another tab"."""
    return {"session": None}


def _session() -> str | None:
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx else None


@contextmanager
def device_lock():
    """Hold the device for one job. Another job in progress is said on the page while this one
    waits (it used to wait with no word, as if the app had hung)."""
    lock, holder = _device(), _holder()
    note = None
    if not lock.acquire(blocking=False):
        note = st.empty()
        ours = holder["session"] is not None and holder["session"] == _session()
        note.info("Waiting for the device: this page's earlier run is finishing its step." if ours else
                  "Waiting for the device: another tab of this app is generating or detecting. This starts when "
                  "that is done.")
        lock.acquire()
    try:  # from here on the lock is released whatever happens: Streamlit may stop this run at any st call
        holder["session"] = _session()
        if note is not None:
            note.empty()
        yield
    finally:
        holder["session"] = None
        lock.release()


def start_job(page: str, params: dict | None = None) -> None:
    """Begin a page's long job (Generate's drawing, Evaluate's run) with the values of the click."""
    st.session_state.setdefault("jobs", {})[page] = {"params": params or {}, "runs": 0}


def job(page: str) -> tuple[dict | None, bool]:
    """(params, again) of the page's job not yet done, or (None, False). A widget used mid-job (Show
    boxes, a second click) makes Streamlit stop the script and run it anew, which used to drop the
    job: it now runs again in the new run (again = True), until job_done(). Leaving the page drops
    it (drop_jobs)."""
    started = st.session_state.get("jobs", {}).get(page)
    if started is None:
        return None, False
    started["runs"] += 1
    return started["params"], started["runs"] > 1


def job_done(page: str) -> None:
    st.session_state.get("jobs", {}).pop(page, None)


@contextmanager
def running(page: str):
    """Run the page's job: done when the block ends, or fails (a job that raised would run, and
    fail, again at every rerun). Streamlit's stop for a rerun is no Exception: the job stays."""
    try:
        yield
    except Exception:
        job_done(page)
        raise
    job_done(page)


def drop_jobs(but: str) -> None:
    """Forget the jobs of the pages other than the one about to run: a page left mid-job does not
    start its job again when the user comes back."""
    jobs = st.session_state.get("jobs", {})
    for page in [p for p in jobs if p != but]:
        del jobs[page]


@st.cache_resource(show_spinner="Loading the generator...")
def load_generator(path: str):
    from generation.pipeline import TextToImage

    return TextToImage.from_pretrained(path)


@st.cache_resource(show_spinner="Loading a detector...")
def load_detector(path: str):
    from detection.detector import Detector

    return Detector.load(path)


def kept(key: str, default=""):
    """The value of a field that outlives a page change (see kept_text_input and start)."""
    return st.session_state.setdefault("kept", {}).setdefault(key, default)


def keep(key: str, value) -> None:
    st.session_state.setdefault("kept", {})[key] = value


def kept_text_input(label: str, key: str, default: str = "", **kwargs) -> str:
    """st.text_input whose value survives moving to another page: Streamlit drops a widget's state
    when a page without it runs, so the value lives under "kept" and is handed back each run."""
    st.session_state[key] = kept(key, default)
    return st.text_input(label, key=key, on_change=lambda: keep(key, st.session_state[key]), **kwargs)


def start(key: str, value):
    """A form widget's starting value, set through Session State: the value it had when its page
    last ran (Streamlit drops a widget's state when another page runs), else `value`. Given as a
    default as well, a restored value would log "created with a default value but also set via
    Session State". Pages call remember_widgets() at their end."""
    if key not in st.session_state:
        st.session_state[key] = kept(key, value)
    st.session_state.setdefault("kept_widget_keys", set()).add(key)
    return key


def remember_widgets() -> None:
    """Keep the values of the widgets start() set up, for the next time their page runs."""
    for key in st.session_state.get("kept_widget_keys", ()):
        if key in st.session_state:
            keep(key, st.session_state[key])


def paths() -> dict[str, str]:
    return {k: user_path(kept(f"path_{k}", value).strip()) for k, value in defaults().items()}


def user_path(typed: str) -> str:
    """A typed path with ~ expanded, as a shell would (it was looked up literally); "~nobody/x", for
    a user that does not exist, stays as typed."""
    return str(gendet_env.expand_user(typed)) if typed else ""


def look(path: Path) -> str:
    """What is at a user's path: "file", "folder", "missing", or why that cannot be told, e.g. "file
    name too long". Never raises: Path.exists raises OSError for a name over 255 bytes or a folder the
    app may not read, and that put a traceback on every page."""
    try:
        return "folder" if path.is_dir() else "file" if path.exists() else "missing"
    except OSError as e:
        return (e.strerror or type(e).__name__).lower()


FOUND = ("file", "folder", "missing")  # what look() says when it could look


def generator():
    """The loaded generator, or None after showing why not."""
    path = paths()["generator"]
    if not path or look(Path(path) / "pipeline.json") != "file":
        inner = generator_inside(Path(path)) if path else None
        hint = f"Did you mean `{inner}`? " if inner else ""
        why = look(Path(path)) if path else "missing"
        where = (f"at `{path}`" + ("" if why in FOUND else f" ({why})") if path
                 else "folder given (the sidebar's Generator folder is empty)")
        st.warning(f"No generator {where}. {hint}{MISSING_HELP}")
        return None
    try:
        return load_generator(path)
    except Exception as e:  # noqa: BLE001 - show, never a traceback
        st.error(f"Could not load the generator from `{path}`: {e}")
        return None


def steps_range(pipe) -> tuple[int, int]:
    """(most, default) for a Steps slider: a model has num_timesteps t values to visit, and its
    default is at most that (`TextToImage.set_defaults`)."""
    if pipe is None:
        return 100, 25
    most = pipe.diffusion.num_timesteps
    return most, int(pipe.defaults["steps"])


def detectors(which=("catdog", "face")) -> dict:
    """{task: Detector} for the configured detectors that exist and load."""
    out = {}
    for task in which:
        path = paths()[task]
        if not path or look(Path(path)) != "file":
            continue
        try:
            out[task] = load_detector(path)
        except Exception as e:  # noqa: BLE001
            # detection's messages start with the path: named once
            st.error(f"Could not load the {task} detector: {e}" if path in str(e) else
                     f"Could not load the {task} detector from `{path}`: {e}")
    return out


def judge_eyes():
    """The detectors wrapped for the judge, or None if there are none."""
    from evaluation.detectors import JudgeDetectors

    found = detectors()
    return JudgeDetectors(found, {t: Path(paths()[t]) for t in found}) if found else None


def sidebar() -> None:
    with st.sidebar:
        st.header("Models")
        p = paths()
        for key, label in (("generator", "Generator folder"), ("catdog", "Cat/dog detector (.pt)"),
                           ("face", "Face detector (.pt)")):
            kept_text_input(label, f"path_{key}", p[key])
            st.caption(path_status(key, p[key]))


def path_status(key: str, path: str) -> str:
    """What the sidebar says under a model path: found, or what is wrong with it."""
    if not path:
        return "no path given"
    p = Path(path)
    kind = look(p)
    if kind not in FOUND:
        return f"cannot check `{p}`: {kind}"
    if kind == "missing":
        return f"missing: `{p}`"
    if key != "generator":
        return f"found at `{p}`" if kind == "file" and p.suffix == ".pt" else f"not a detector: `{p}` is not a .pt file"
    if kind == "file":
        return f"a file, not a generator folder: `{p}`"
    if look(p / "pipeline.json") == "file":
        return f"found at `{p}`"
    inner = generator_inside(p)
    return (f"not a generator folder (no pipeline.json); did you mean `{inner}`?" if inner else
            f"a folder without pipeline.json (not a saved generator): `{p}`")


def generator_inside(folder: Path) -> Path | None:
    """The generator in a bundle folder (generator/) or a training run's (pipeline/), if any."""
    return next((q for q in (folder / "generator", folder / "pipeline") if look(q / "pipeline.json") == "file"), None)
