"""Make docs/img/review_task.png: a Label Studio task with moclip's pre-annotation, as a reviewer sees it.

The whole round through the real tools: the demo corpus (4 clips per class) is indexed and a model trained on it; a
second demo corpus (another seed, 2 clips per class) is the archive, labelled with that model; `moclip review
select` picks 5 videos and `moclip review export` sends them to a Label Studio 1.23 server started here (on
loopback, as the tests start it: tests/helpers/labelstudio.py); headless Chromium, driven by Playwright, logs in
and opens the most uncertain task. CLIP weights are random (none can be downloaded here): the prediction comes from
the motion vectors.

Needs Playwright in some Python (not moclip's: ``python3 -m venv /tmp/pw && /tmp/pw/bin/pip install playwright``)
and a Chromium (Debian: ``apt-get install chromium``):

    .venv/bin/python docs/make_review_screenshot.py --playwright-python /tmp/pw/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from helpers.labelstudio import PASSWORD, USER, start  # noqa: E402

MOCLIP = str(Path(sys.executable).parent / "moclip")

BROWSE = r"""
import sys
from urllib.parse import quote, urlsplit
from playwright.sync_api import sync_playwright
url, user, password, page_url, out, chromium = sys.argv[1:7]
target = urlsplit(page_url)
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url + "/user/login/?next=" + quote(target.path + "?" + target.query))
    page.fill("input[name=email]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    try:  # the prediction's tab (named by its model_version, "moclip:..."): show the pre-annotation
        page.get_by_text("moclip:", exact=False).first.click(timeout=90000)
    except Exception:
        page.screenshot(path=out + ".failed.png")
        raise SystemExit(f"no moclip prediction on {page.url}: see {out}.failed.png")
    page.mouse.move(600, 960)  # the tab's tooltip away
    page.wait_for_timeout(5000)  # the video's first frame
    page.screenshot(path=out, full_page=True)
    browser.close()
"""


def run(*args: str) -> None:
    r = subprocess.run([MOCLIP, *args], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"moclip {' '.join(args)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    print(r.stdout.strip().splitlines()[-1] if r.stdout.strip() else f"moclip {args[0]}: done", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--playwright-python", required=True, help="a Python that has playwright installed")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--out", default=str(REPO / "docs" / "img" / "review_task.png"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="moclip-screenshot-") as tmp_name:
        tmp = Path(tmp_name)
        server = start(tmp)
        os.environ["MOCLIP_LABEL_STUDIO_TOKEN"] = server.token  # as a user exports it
        try:
            root = server.media / "demo"
            make = [sys.executable, str(REPO / "data" / "make_demo_corpus.py")]
            subprocess.run([*make, str(root / "train"), "--clips-per-class", "4"], check=True)
            subprocess.run([*make, str(root / "archive"), "--clips-per-class", "2", "--seed", "1"], check=True)
            run("index", str(root / "train"), "--out", str(root / "ds"), "--clip-weights", "none", "--layout", "folder")
            run("train", str(root / "ds"), "--out", str(root / "model"), "--no-flip")
            run("label", str(root / "archive"), "--model", str(root / "model"), "--out", str(root / "labels"),
                "--features-out", str(root / "archive-ds"))
            run("review", "select", str(root / "labels"), "-n", "5", "--out", str(root / "batch"))
            run("review", "export", str(root / "batch"), "--url", server.url, "--project", "moclip review: demo",
                "--document-root", str(server.media))
            import httpx

            auth = {"Authorization": f"Token {server.token}"}
            project = httpx.get(f"{server.url}/api/projects/", headers=auth).json()["results"][0]["id"]
            tasks = httpx.get(f"{server.url}/api/tasks/", params={"project": project, "fields": "all"},
                              headers=auth).json()["tasks"]
            first = min(tasks, key=lambda t: t["predictions"][0]["score"])  # the least sure: what a reviewer sees
            page = f"{server.url}/projects/{project}/data?task={first['id']}"
            subprocess.run([args.playwright_python, "-c", BROWSE, server.url, USER, PASSWORD, page, args.out,
                            args.chromium], check=True)
            print(json.dumps({"task": first["id"], "prediction": first["predictions"][0]["result"],
                              "score": first["predictions"][0]["score"]}))
            print(f"wrote {args.out}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
