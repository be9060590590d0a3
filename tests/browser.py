"""Driving Debian's chromium with pip's playwright (never `playwright install`)."""
from __future__ import annotations

import contextlib
import shutil

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


needs_browser = pytest.mark.skipif(chromium_path() is None,
                                   reason="chromium not installed (apt-get install chromium)")


@contextlib.contextmanager
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=FLAGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def open_page(b, url: str):
    """Open `url`; returns (page, console errors, page errors) with every image loaded."""
    page = b.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_load_state("load")
    return page, errors


def broken_images(page) -> list[str]:
    """Force lazy images to load, then list those that failed."""
    page.evaluate("""() => Promise.all(Array.from(document.images).map(img => {
        img.loading = 'eager';
        if (img.complete) return null;
        return new Promise(r => { img.onload = img.onerror = r; });
    }))""")
    return page.evaluate("""() => Array.from(document.images)
        .filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src'))""")


def pages_to_check(site) -> list:
    """Every page of a site, except that of the unit pages of a run (one template, dozens of
    pages) only the first three are opened: the browser pass is a third of the test suite's
    time otherwise."""
    from collections import defaultdict

    seen: dict = defaultdict(int)
    out = []
    for p in sorted(site.rglob("*.html")):
        if p.name.startswith("unit-"):
            seen[p.parent] += 1
            if seen[p.parent] > 3:
                continue
        out.append(p)
    return out
