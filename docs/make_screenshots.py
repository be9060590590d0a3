"""Screenshots of the report for the README and docs/: the index and the pages of the views,
taken from the demo's site at 100% zoom (1280 px wide) in Debian's chromium.

    convlens demo --out convlens-demo
    .venv/bin/python docs/make_screenshots.py convlens-demo/site

Pages of the photo model (builtin:stamps-net) are taken where the demo ran it, else shapes-net.
"""
import shutil
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]
MODELS = ("stamps-net", "shapes-net", "fashion-net")


def pick(site: Path, *patterns: str) -> Path | None:
    """The page for the first model (in MODELS order) that has one of `patterns`."""
    for m in MODELS:
        for pattern in patterns:
            found = sorted(site.glob(pattern.format(m=m)))
            if found:
                return found[0]
    return None


def main(site: Path) -> None:
    out = Path(__file__).parent
    shots = [
        (site / "index.html", "report-index.png", None),
        (pick(site, "runs/{m}_occlusion/index.html"), "report-occlusion.png", None),
        (pick(site, "runs/{m}_guided_backprop/index.html"), "report-gradients.png", None),
        (pick(site, "images/builtin_{m}/index.html"), "report-images.png", None),
        (pick(site, "runs/{m}_scan/index.html"), "report-scan.png", None),
        (pick(site, "runs/{m}_tsne/index.html"), "report-tsne.png", None),
        (pick(site, "runs/{m}_units_layer4.relu2/unit-3.html",  # the last layer: stamps-net,
              "runs/{m}_units_features.11/unit-3.html"),  # the AlexNet-shaped nets
         "report-unit.png", None),
    ]
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=shutil.which("chromium"), args=FLAGS)
        page = b.new_page(viewport={"width": 1280, "height": 1000})
        for url, name, _ in shots:
            if url is None or not url.is_file():
                print(f"no page for {name}", file=sys.stderr)
                continue
            page.goto(url.resolve().as_uri())
            page.wait_for_load_state("load")
            page.evaluate("() => document.querySelectorAll('img')"
                          ".forEach(i => i.loading = 'eager')")
            page.wait_for_timeout(400)
            page.screenshot(path=str(out / name))
            print(out / name)
        b.close()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "convlens-demo/site"))
