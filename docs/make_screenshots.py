"""Screenshots of the report for the README: the index and a unit page.

    convlens demo --out convlens-demo
    .venv/bin/python docs/make_screenshots.py convlens-demo/site
"""
import shutil
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]


def main(site: Path) -> None:
    out = Path(__file__).parent
    unit = next(iter(sorted((site / "runs").glob("*units_features.4/unit-3.html"))))
    tsne = next(iter(sorted((site / "runs").glob("*tsne/index.html"))))
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=shutil.which("chromium"), args=FLAGS)
        page = b.new_page(viewport={"width": 1280, "height": 900})
        for url, name in [(site / "index.html", "report-index.png"), (unit, "report-unit.png"),
                          (tsne, "report-tsne.png")]:
            page.goto(url.resolve().as_uri())
            page.wait_for_load_state("load")
            page.screenshot(path=str(out / name))
            print(out / name)
        b.close()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "convlens-demo/site"))
