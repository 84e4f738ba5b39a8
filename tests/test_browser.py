"""End to end in a real browser: `streamlit run ui` on a loopback port, driven by
Debian's chromium through Playwright (never `playwright install`)."""

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

# a judged image's verdict, passed or failed (ui/generate.py): which one depends on the model
VERDICT = re.compile("[✓✗] ")

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (CI installs it)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_server(tiny_detector, tmp_path_factory):
    """(url, log): the app on the tiny test models, and the file its server prints to."""
    from test_pipeline import tiny_pipeline

    folder = tmp_path_factory.mktemp("browser")
    tiny_pipeline().save_pretrained(folder / "generator")
    env = os.environ.copy() | {"GENDET_GENERATOR": str(folder / "generator"),
                               "GENDET_CATDOG": str(tiny_detector[1] / "best.pt")}
    for url in _serve(env, folder / "streamlit.log"):
        yield url, folder / "streamlit.log"


@pytest.fixture(scope="module")
def app_url(app_server):
    return app_server[0]


@pytest.fixture(scope="module")
def bundle_url(tmp_path_factory):
    """The app as the README starts it: no overrides, the bundled models in models/demo/."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENDET_")}
    yield from _serve(env, tmp_path_factory.mktemp("bundle") / "streamlit.log")


def _serve(env, log: Path):
    port = _free_port()
    cmd = [
        sys.executable, "-m", "streamlit", "run", "ui", "--server.headless", "true",
        "--server.address", "127.0.0.1", "--server.port", str(port),
        "--browser.gatherUsageStats", "false",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("streamlit did not become healthy in 30 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def open_generate(page, url, prompt, timeout=30_000):
    """The Generate page, loaded, with the prompt typed in."""
    page.goto(url + "/generate")
    box = page.get_by_label("Prompt")
    box.wait_for(timeout=timeout)
    box.fill(prompt)


def test_app_renders_in_chromium(app_url, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        asked = []  # every request the page makes: none may leave this machine (the tab icon came from Google)
        page.on("request", lambda request: asked.append(request.url))
        page.goto(app_url)
        page.get_by_text("Text-to-image generation that checks itself").wait_for(timeout=30_000)
        page.wait_for_timeout(1000)  # the icon is asked for after the page draws
        page.screenshot(path=tmp_path / "home.png", full_page=True)
        assert page.locator("[data-testid='stException']").count() == 0
        browser.close()
    outside = [u for u in asked if not u.startswith((app_url, "data:", "blob:"))]
    assert not outside and any("/media/" in u for u in asked), outside  # the icon: served by the app
    assert (tmp_path / "home.png").stat().st_size > 5_000


def test_the_sidebar_paths_outlive_page_changes(app_url, tmp_path):
    """Streamlit drops a widget's state when another page runs: the model paths must not (they did,
    on every other page change, and Generate then found no model), nor the forms' values."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(app_url)
        field = page.get_by_label("Generator folder")
        field.wait_for(timeout=30_000)
        shipped = field.input_value()
        assert shipped.endswith("generator")

        def visit(name):
            page.get_by_role("link", name=name).click()
            # the page's title (h1): the sidebar has an h2 "Models" too
            page.get_by_role("heading", name="gendet" if name == "Home" else name, level=1).wait_for(timeout=30_000)
            page.wait_for_timeout(500)
            return field.input_value()

        assert [visit(n) for n in ("Generate", "Detect", "Evaluate", "Models", "Generate")] == [shipped] * 5
        assert page.get_by_role("button", name="Generate").is_enabled()
        # the forms' values too, once sent: a prompt generated from, and the Evaluate page's folder
        page.get_by_label("Prompt").fill("two dogs")
        page.get_by_role("button", name="Generate").click()
        page.get_by_role("button", name="Download PNG").first.wait_for(timeout=120_000)
        visit("Evaluate")
        out = page.get_by_label("Output folder (relative: in the repository)")
        out.fill(str(tmp_path / "my_eval"))
        out.press("Enter")
        page.wait_for_timeout(500)
        visit("Detect")
        visit("Generate")
        assert page.get_by_label("Prompt").input_value() == "two dogs"
        # the candidate budget shows only with "Keep only images that pass", a checkbox outside the
        # form: ticking it reruns the page, and what was typed in the form, not yet sent, stays
        budget = page.get_by_role("spinbutton", name="Candidate budget")
        assert budget.count() == 0
        page.get_by_label("Prompt").fill("three cats")
        page.get_by_text("Keep only images that pass").click()
        budget.wait_for(timeout=30_000)
        assert page.get_by_label("Prompt").input_value() == "three cats"
        visit("Evaluate")
        assert out.input_value() == str(tmp_path / "my_eval")
        field.fill(str(tmp_path / "nowhere"))  # a path typed in stays too, on every page
        field.press("Enter")
        page.get_by_text("No generator at").first.wait_for(timeout=30_000)
        assert [visit(n) for n in ("Home", "Evaluate", "Detect")] == [str(tmp_path / "nowhere")] * 3
        assert page.locator("[data-testid='stException']").count() == 0
        browser.close()


def test_generate_in_chromium_shows_images_and_verdicts(app_url, tmp_path):
    """Type a prompt, click Generate, wait for the verdicts under the images."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        open_generate(page, app_url, "a cat")
        page.get_by_role("button", name="Generate").click()
        verdicts = page.locator("[data-testid='stAlert']").filter(has_text=VERDICT)
        verdicts.first.wait_for(timeout=120_000)
        page.get_by_role("button", name="Download PNG").nth(3).wait_for(timeout=60_000)  # all four rendered
        verdicts.nth(3).wait_for(timeout=30_000)  # each image's button is drawn before its verdict
        page.wait_for_timeout(500)
        page.screenshot(path=tmp_path / "generate.png", full_page=True)
        assert page.locator("[data-testid='stException']").count() == 0
        assert page.locator("[data-testid='stImage']").count() >= 4
        assert verdicts.count() == 4
        assert page.get_by_role("button", name="Download PNG").count() == 4
        browser.close()
    assert (tmp_path / "generate.png").stat().st_size > 10_000


def test_two_tabs_generate_at_once_on_the_bundled_models_and_download(bundle_url, tmp_path):
    """The README's app on models/demo: two sessions click Generate together (the device lock
    serialises the model work); both get four judged images; a PNG downloads with its prompt."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    prompts = ["a black cat and a dog", "two faces"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pages = [browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 1400}).new_page()
                 for _ in prompts]
        for page, prompt in zip(pages, prompts):
            open_generate(page, bundle_url, prompt, timeout=60_000)
        for page in pages:
            page.get_by_role("button", name="Generate").click()  # both before either finishes
        for page, prompt in zip(pages, prompts):
            page.get_by_role("button", name="Download PNG").nth(3).wait_for(timeout=180_000)
            verdicts = page.locator("[data-testid='stAlert']").filter(has_text=VERDICT)
            verdicts.nth(3).wait_for(timeout=30_000)  # each image's button is drawn before its verdict
            assert verdicts.count() == 4, prompt
            assert page.locator("[data-testid='stImage']").count() >= 4
            assert page.locator("[data-testid='stException']").count() == 0
        with pages[0].expect_download() as info:
            pages[0].get_by_role("button", name="Download PNG").first.click()
        path = tmp_path / "download.png"
        info.value.save_as(path)
        browser.close()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] >= 64
        assert "a black cat and a dog" in " ".join(str(v) for v in im.info.values())


def test_a_widget_used_mid_drawing_draws_again_instead_of_dropping_it(bundle_url, tmp_path):
    """Show boxes clicked while the bundled generator draws: Streamlit stops the page and runs it
    anew, and the drawing starts again in that run (it used to be dropped, with no images)."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        open_generate(page, bundle_url, "a white dog", timeout=60_000)
        page.get_by_role("button", name="Generate").click()
        page.get_by_text(re.compile(r"step \d+ of \d+")).first.wait_for(timeout=60_000)
        page.get_by_test_id("stCheckbox").filter(has_text="Show boxes").click()
        expect(page.get_by_text("Drawing again from the start")).to_be_visible(timeout=60_000)
        expect(page.get_by_role("button", name="Download PNG")).to_have_count(4, timeout=120_000)
        expect(page.get_by_text("Drawing again from the start")).to_have_count(0)
        assert page.get_by_text("Earlier in this session").count() == 0  # drawn once, not twice
        assert page.locator("[data-testid='stException']").count() == 0
        # two quick uses: the second stopped a run waiting for the device, which then kept it for ever
        page.get_by_label("Prompt").fill("two faces")
        page.get_by_role("button", name="Generate").click()
        page.get_by_text(re.compile(r"step \d+ of \d+")).first.wait_for(timeout=60_000)
        boxes = page.get_by_test_id("stCheckbox").filter(has_text="Show boxes")
        boxes.click()
        page.wait_for_timeout(400)
        boxes.click()
        expect(page.get_by_role("button", name="Download PNG")).to_have_count(8, timeout=120_000)
        assert page.get_by_text("Earlier in this session").count() == 1
        assert page.locator("[data-testid='stException']").count() == 0
        page.screenshot(path=tmp_path / "redrawn.png", full_page=True)
        browser.close()


def test_generate_redraws_an_uploaded_image_in_chromium(app_server, tmp_path):
    """Upload an image (and then a mask over it, kept outside it or blended), click Generate: four
    judged images made from it, the settings line names the redraw strength and the upload. Restoring its PNG sets the form's
    values without Streamlit's warning about a widget given a value twice."""
    app_url, log = app_server
    import numpy as np
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright

    photo, mask = tmp_path / "photo.png", tmp_path / "mask.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(photo)
    white = np.zeros((48, 64), np.uint8)
    white[:, 32:] = 255
    Image.fromarray(white).save(mask)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        open_generate(page, app_url, "a cat")
        page.get_by_text("Start from an image: edit or inpaint").click()
        def upload(label, path):  # the uploader labelled so
            page.get_by_role("region", name=label, exact=True).locator("input[type='file']").set_input_files(str(path))

        upload("Image (cut to a centre square)", photo)
        chip = "[data-testid='stFileChipName'][title='{}']"
        page.locator(chip.format("photo.png")).wait_for(state="attached", timeout=30_000)
        page.get_by_role("button", name="Generate").click()
        page.get_by_role("button", name="Download PNG").nth(3).wait_for(timeout=120_000)
        page.locator("[data-testid='stAlert']").filter(has_text=VERDICT).nth(3).wait_for(timeout=30_000)
        assert page.locator("[data-testid='stAlert']").filter(has_text=VERDICT).count() == 4
        assert page.get_by_text("photo.png redrawn at strength 0.5").count() == 1  # the history's line
        upload("Mask: white = redraw (optional)", mask)  # now inpaint: the rest is kept, as the CLI's --mask
        page.locator(chip.format("mask.png")).wait_for(state="attached", timeout=30_000)
        page.get_by_role("button", name="Generate").click()
        page.get_by_text("photo.png inpainted inside mask.png").wait_for(timeout=120_000)
        blend = "With a mask: also redraw outside it, at this strength"
        page.get_by_text(blend).click()  # and blended: the whole image noised to the strength too
        page.get_by_role("button", name="Generate").click()
        page.get_by_text("photo.png redrawn at strength 0.5 inside mask.png").wait_for(timeout=120_000)
        assert page.locator("[data-testid='stException']").count() == 0
        page.get_by_text(blend).click()  # off again, so the restore below has to turn it on
        # a downloaded edit, restored: its strength comes back, and the page asks for its image again
        with page.expect_download() as info:
            page.get_by_role("button", name="Download PNG").first.click()
        info.value.save_as(tmp_path / "edit.png")
        page.get_by_text("Load settings from a PNG made by gendet").click()
        upload("PNG", tmp_path / "edit.png")
        page.locator(chip.format("edit.png")).wait_for(state="attached", timeout=30_000)
        page.get_by_role("button", name="Restore these settings").click()
        page.get_by_text("was drawn from photo.png under the mask mask.png").wait_for(timeout=30_000)
        # (in the image expander, which the rerun closed; a new widget since restoring: waited for)
        expect(page.get_by_role("checkbox", name=blend, include_hidden=True)).to_be_checked(timeout=30_000)
        assert page.locator("[data-testid='stException']").count() == 0
        browser.close()
    assert "set via the Session State API" not in log.read_text()


def test_evaluate_downloads_a_runs_report_in_chromium(app_url, tmp_path):
    """The report's zip is made when the button is clicked (a deferred download), in a real browser."""
    import zipfile

    from playwright.sync_api import sync_playwright
    from test_ui import _finished_run

    _finished_run(tmp_path / "many", 130)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(app_url + "/evaluate")
        page.get_by_role("tab", name="Open a run").click()
        field = page.get_by_label("Run folder (holds summary.json)")
        field.fill(str(tmp_path / "many"))
        field.press("Enter")
        page.get_by_text("Images 1-120 of 130").wait_for(timeout=30_000)
        with page.expect_download(timeout=60_000) as download:
            page.get_by_role("button", name="Download the report").click()
        assert download.value.suggested_filename == "many_report.zip"
        download.value.save_as(tmp_path / "got.zip")
        assert page.locator("[data-testid='stException']").count() == 0
        browser.close()
    with zipfile.ZipFile(tmp_path / "got.zip") as z:
        assert "many/report.html" in z.namelist() and len(z.namelist()) == 135


def test_restored_settings_win_over_text_typed_and_not_sent(app_url, tmp_path):
    """A Streamlit form sends what was typed in it and not yet sent over values the server sets:
    the restored prompt was shown, and the typed one drawn. Restoring gives the form new widgets."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        open_generate(page, app_url, "a dog")
        page.get_by_role("spinbutton", name="Images").fill("1")
        page.get_by_role("spinbutton", name="Seed").fill("3")
        page.get_by_role("button", name="Generate").click()
        page.get_by_role("button", name="Download PNG").first.wait_for(timeout=120_000)
        with page.expect_download() as info:
            page.get_by_role("button", name="Download PNG").first.click()
        info.value.save_as(tmp_path / "a.png")
        page.get_by_label("Prompt").fill("two cats")  # typed, not sent
        page.get_by_role("spinbutton", name="Seed").fill("9")
        page.get_by_text("Load settings from a PNG made by gendet").click()
        page.get_by_role("region", name="PNG", exact=True).locator("input[type='file']").set_input_files(
            str(tmp_path / "a.png"))
        page.locator("[data-testid='stFileChipName'][title='a.png']").wait_for(state="attached", timeout=30_000)
        page.get_by_role("button", name="Restore these settings").click()
        # the restored widget is new: until the rerun ends, the old one (with "two cats") may be there too
        expect(page.locator("input[aria-label='Prompt'][value='a dog']")).to_have_count(1, timeout=60_000)
        expect(page.get_by_label("Prompt")).to_have_count(1, timeout=60_000)
        page.get_by_role("button", name="Generate").click()
        page.get_by_text("Earlier in this session").wait_for(timeout=120_000)
        heads = page.locator("[data-testid='stMarkdownContainer'] strong").all_inner_texts()
        assert heads[:2] == ["a dog", "a dog"] and page.get_by_text("seed 9").count() == 0
        browser.close()
