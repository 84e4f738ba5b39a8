"""The README's app screenshots, taken from the real app on the bundled demo models.

    python docs/screenshots.py   # writes docs/app_generate.png, docs/app_evaluate.png, docs/eval_report.png

Starts `streamlit run ui` on a loopback port, drives Debian's chromium through Playwright,
types a prompt, clicks Generate and times the first click to the first image (printed), then
opens an evaluation run folder (default: the demo build's, runs/demo_cpu/eval) on the Evaluate
page, and finally that run's own report.html. Needs Debian's chromium, and fonts-noto-color-emoji
for the page icons.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def start_app() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "streamlit", "run", "ui", "--server.headless", "true", "--server.address",
           "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=1) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise SystemExit("streamlit did not become healthy in 60 s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompt", default="a black cat to the left of a dog", help="the Generate page's prompt")
    ap.add_argument("--eval-run", default=str(ROOT / "runs" / "demo_cpu" / "eval"),
                    help="an evaluation.run output folder to show on the Evaluate page")
    ap.add_argument("--out", default=str(ROOT / "docs"), help="folder for the PNGs (default docs/)")
    args = ap.parse_args(argv)
    for name in ("summary.json", "report.html"):  # before any picture is replaced
        if not (Path(args.eval_run) / name).is_file():
            ap.error(f"--eval-run {args.eval_run} holds no {name}: give a finished evaluation.run folder "
                     "(the demo build's is runs/demo_cpu/eval; a fresh clone has none: run evaluation.run first)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs Debian's chromium (apt install chromium) and the playwright package")
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    proc, url = start_app()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            # tall enough for the images and their verdicts (streamlit scrolls inside the page)
            page = browser.new_page(viewport={"width": 1280, "height": 1500})
            t_open = time.perf_counter()
            page.goto(url + "/generate")
            box = page.get_by_label("Prompt")
            box.wait_for(timeout=60_000)
            page.get_by_text("found at").first.wait_for(timeout=120_000)  # the sidebar has found the models
            ready = time.perf_counter() - t_open
            box.fill(args.prompt)
            t0 = time.perf_counter()
            page.get_by_role("button", name="Generate").click()
            page.locator("[data-testid='stImage']").first.wait_for(timeout=300_000)
            first = time.perf_counter() - t0
            page.get_by_role("button", name="Download PNG").nth(3).wait_for(timeout=300_000)
            everything = time.perf_counter() - t0
            page.wait_for_timeout(1000)
            page.screenshot(path=out / "app_generate.png", full_page=True)
            print(f"Generate: page open to models loaded {ready:.1f} s; click to first image {first:.1f} s, "
                  f"to all four with verdicts {everything:.1f} s")

            page.set_viewport_size({"width": 1280, "height": 1000})
            page.goto(url + "/evaluate")
            page.get_by_role("tab", name="Open a run").click()
            field = page.get_by_label("Run folder (holds summary.json)")
            field.fill(args.eval_run)
            field.press("Enter")
            page.get_by_text("Judge rules").wait_for(timeout=60_000)
            page.wait_for_timeout(3000)  # chart and thumbnails
            page.screenshot(path=out / "app_evaluate.png", full_page=False)

            # evaluation.run's report.html as a reader opens it: a file, no server
            page.set_viewport_size({"width": 1280, "height": 900})
            page.goto((Path(args.eval_run).resolve() / "report.html").as_uri())
            page.wait_for_load_state("load")
            page.screenshot(path=out / "eval_report.png", full_page=False)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"wrote {', '.join(str(out / n) for n in ('app_generate.png', 'app_evaluate.png', 'eval_report.png'))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
