"""The report: built from saved results only, no torch, escaped, and clean in a real browser."""
import subprocess
import sys
import textwrap

import pytest
import torch
from browser import broken_images, browser, needs_browser, open_page, pages_to_check
from torch import nn

from convlens import Lens, load_data, load_model
from convlens.engine.settings import RunSettings
from convlens.lens import LayersResult
from convlens.techniques.activity.activations import activation_stats, activations
from convlens.techniques.activity.filters import filters

EVIL = "<script>window.__pwned = 1</script>"


class Evil(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.relu = nn.ReLU()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(3 * 28 * 28, 2))
        with torch.no_grad():  # class 0, labelled EVIL, always wins
            self.head[1].bias.copy_(torch.tensor([100.0, 0.0]))

    def forward(self, x):
        return self.head(self.relu(self.conv(x)))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    lens = load_model("builtin:fashion-net")
    LayersResult(lens.layers()).save(root / "layers", lens=lens)
    ds = load_data("builtin:shapes:test:8")  # any images: grey-converted by the lens
    x = torch.stack([lens.preprocess((ds[i].image.permute(1, 2, 0).numpy() * 255).astype("uint8"))
                     for i in range(2)])
    activations(lens, x, ["features.1", "features.4"]).save(root / "activations", lens=lens)
    filters(lens).save(root / "filters", lens=lens)
    evil = Lens(Evil(), mean=(0.5,), std=(0.5,), input_size=(1, 28, 28), labels=[EVIL, "b"])
    activations(evil, x).save(root / EVIL.replace("/", "_"), lens=evil,
                              command=["convlens", "activations", "--image", EVIL + ".png"])
    activation_stats(evil, load_data("builtin:shapes:test:8", lens=evil),
                     run=RunSettings(progress=False)).save(root / "stats", lens=evil)
    return root


def build(results, out):
    from convlens.report.site import build_site
    return build_site([results], out)


def test_report_never_imports_torch(results, tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from convlens.report.site import build_site
        build_site([{str(results)!r}], {str(tmp_path / 'site')!r})
        assert "torch" not in sys.modules, "the report imported torch"
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "site" / "index.html").is_file()


def test_every_string_escaped(results, tmp_path):
    index = build(results, tmp_path / "site")
    pages = list(index.parent.rglob("*.html"))
    assert len(pages) >= 6
    for p in pages:
        assert EVIL not in p.read_text(), p
    text = "".join(p.read_text() for p in pages)
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in text


@pytest.mark.slow
@needs_browser
def test_pages_load_clean_in_chromium(results, tmp_path):
    index = build(results, tmp_path / "site")
    pages = sorted(index.parent.rglob("*.html"))
    with browser() as b:
        for p in pages:
            page, errors = open_page(b, p.as_uri())
            assert errors == [], (p, errors)
            assert broken_images(page) == [], p
            assert page.evaluate("() => window.__pwned === undefined")
            page.close()
        page, _ = open_page(b, index.as_uri())
        assert page.locator("#layers").count() == 1
        assert page.locator("table.runs a").count() >= 5
        page.locator("ul.views a", has_text="activations").first.click()
        page.wait_for_load_state("load")
        assert "activations" in page.title()


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory):
    """The quick demo: every landed view on both built-in models, and its site."""
    from convlens.commands.demo import run_demo
    out = tmp_path_factory.mktemp("demo")
    return run_demo(out, quick=True, progress=False)[0]


@pytest.mark.slow
def test_demo_writes_every_view(demo_site):
    """Every view on every built-in model, stamps-net (photographs) included where Debian's
    tuxpaint-stamps-default is installed (CI installs it)."""
    from convlens.commands.demo import stamps_available

    root = demo_site.parent.parent
    models = ("fashion-net", "shapes-net") + (("stamps-net",) if stamps_available() else ())
    last = {"fashion-net": "features.11", "shapes-net": "features.11",  # the last ReLU layer
            "stamps-net": "layer4.relu2"}
    for model in models:
        for view in ("layers", "activations", "filters", "stats", "saliency", "deconvnet",
                     "guided_backprop", "grad_cam", "guided_grad_cam", "smoothgrad",
                     "integrated_gradients", "occlusion", "scan", f"units_{last[model]}",
                     f"units_dirs_{last[model]}", "tsne", "attributes", "inversion",
                     "class_model", "featvis", "correspondence", "fool", "robustness",
                     *CAMS):
            assert (root / model / view / "manifest.json").is_file(), (model, view)


@pytest.mark.slow
@needs_browser
def test_demo_site_in_chromium(demo_site):
    site = demo_site.parent
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 50
    with browser() as b:
        for p in pages_to_check(site):  # one pass: errors, broken images and the promises
            page, errors = open_page(b, p.as_uri())
            assert errors == [], (p, errors)
            assert broken_images(page) == [], p
            check_promises(page, p)
            page.close()
        # the t-SNE hover shows a tooltip with the image, label and prediction
        page, _ = open_page(b, (site / "runs" / "fashion-net_tsne" / "index.html").as_uri())
        assert hover_some_point(page)
        assert "label:" in page.locator("#tiptext").text_content()
        # clicking a unit opens its page
        page, _ = open_page(b, (site / "runs" / "fashion-net_units_features.11"
                                / "index.html").as_uri())
        page.locator("a.unit").nth(2).click()
        page.wait_for_load_state("load")
        assert "unit 2" in page.title()
        # its top images, its top patches and (the demo runs featvis on this layer) the image
        # optimised to excite it
        captions = page.locator("figure.panel").all_text_contents()
        assert page.locator("figure.panel img").count() == 3, captions
        assert any("feature visualisation" in c for c in captions), captions


PICTURE_WIDTHS = ("() => Array.from(document.images).filter(i => i.naturalWidth > 0)\n"
                  "    .filter(i => i.getBoundingClientRect().width < i.naturalWidth / 2 - 0.5)\n"
                  "    .map(i => i.getAttribute('src') + ' ' + i.getBoundingClientRect().width"
                  " + '/' + i.naturalWidth)")


CAMS = ("grad_cam_plus_plus", "xgrad_cam", "hires_cam", "layer_cam", "score_cam",
        "ablation_cam", "eigen_cam")
METHODS = ("occlusion", "saliency", "deconvnet", "guided_backprop", "grad_cam",
           "guided_grad_cam", "smoothgrad", "integrated_gradients")


def check_promises(page, p) -> None:
    """Every run page says what it shows; every map on the occlusion and gradient pages has a
    colour bar (class maps a legend); no picture is shown at less than half its natural width."""
    assert page.evaluate(PICTURE_WIDTHS) == [], p
    if p.name == "index.html" and p.parent.parent.name == "runs":
        assert page.locator("p.about").count() == 1, f"{p}: no line on what it shows"
    if p.parent.name.split("_", 1)[-1] in METHODS + CAMS:
        maps = page.locator("figure.panel.map")
        assert maps.count() > 0, p
        for i in range(maps.count()):
            m = maps.nth(i)
            assert m.locator(".colorbar").count() + m.locator("ul.legend").count() == 1, \
                (p, m.get_attribute("data-picture"))


@pytest.mark.slow
@needs_browser
def test_images_pages_have_every_method(demo_site):
    """The images page of each model has a row with every method, occlusion included."""
    site = demo_site.parent
    models = sorted(p.name for p in (site / "images").iterdir())
    assert {"builtin_fashion-net", "builtin_shapes-net"} <= set(models)
    with browser() as b:
        for model in models:
            page, errors = open_page(b, (site / "images" / model / "index.html").as_uri())
            assert errors == []
            rows = page.locator("section.image-row")
            assert rows.count() >= 4
            kinds = set(rows.first.locator("figure[data-method]").evaluate_all(
                "els => els.map(e => e.dataset.method)"))
            assert ({k if not k.startswith("smoothgrad") else "smoothgrad" for k in kinds}
                    >= set(METHODS))
            # the CAM line: Grad-CAM first, then its successors (issue 25)
            cams = rows.first.locator(".cam-row figure[data-method]").evaluate_all(
                "els => els.map(e => e.dataset.method)")
            assert cams == ["grad_cam", *CAMS]
            page.close()


def hover_some_point(page) -> bool:
    box = page.locator("#tsne").bounding_box()
    for gx in range(10, int(box["width"]) - 10, 12):
        for gy in range(10, int(box["height"]) - 10, 12):
            page.mouse.move(box["x"] + gx, box["y"] + gy)
            if page.locator("#tooltip").is_visible():
                return True
    return False


@pytest.mark.slow
@needs_browser
def test_10k_point_map_opens_fast(tmp_path):
    """A t-SNE map of 10,000 images (a fabricated result of the saved format) loads in < 2 s."""
    import json

    import numpy as np
    import pandas as pd

    from convlens.draw import save_png, tile_grid
    from convlens.report.site import build_site

    n, rng = 10_000, np.random.default_rng(0)
    res = tmp_path / "tsne"
    res.mkdir()
    pd.DataFrame({"index": np.arange(n), "label": rng.integers(0, 10, n),
                  "pred": rng.integers(0, 10, n), "correct": rng.random(n) < 0.9,
                  "x": rng.normal(size=n), "y": rng.normal(size=n)}
                 ).to_parquet(res / "embedding.parquet")
    save_png(res / "sprites.png",
             tile_grid(rng.integers(0, 255, (n, 24, 24, 3), dtype=np.uint8), cols=100, pad=0))
    (res / "manifest.json").write_text(json.dumps({
        "kind": "tsne", "model": {"name": "m", "labels": [f"c{k}" for k in range(10)]},
        "info": {"sprites": {"size": 24, "cols": 100, "count": n}},
        "arrays": {}, "tables": {"embedding": "embedding.parquet"},
        "pictures": {"sprites": "sprites.png"}}))
    index = build_site([res], tmp_path / "site")
    with browser() as b:
        page, errors = open_page(b, (index.parent / "runs" / "tsne" / "index.html").as_uri())
        ms = page.evaluate("() => performance.getEntriesByType('navigation')[0].loadEventEnd")
        assert errors == [] and ms < 2000, ms
        assert hover_some_point(page)


def test_results_show_themselves_in_notebooks():
    """Every result has `_repr_html_` (Jupyter): pictures embedded, strings escaped."""
    from convlens.techniques.gradients.gradients import guided_backprop
    from convlens.techniques.occlusion.occlusion import occlusion
    lens = load_model("builtin:shapes-net")
    x = torch.stack([load_data("builtin:shapes:test:2", lens=lens)[i].image for i in range(2)])
    for res in (guided_backprop(lens, x), occlusion(lens, x, window=16, stride=8),
                activations(lens, x, ["features.1"]), filters(lens)):
        h = res._repr_html_()
        assert "<img" in h and "data:image/png;base64," in h


@needs_browser
@pytest.mark.slow
def test_demo_on_your_own_model_and_photo_folder(tmp_path):
    """`convlens demo --model torchvision:resnet18 --data photos/` builds a complete site (issue
    15): every view that applies, the folder's class names, random weights flagged; the browser
    checks hold on it."""
    from conftest import photo_folder
    from convlens.cli import main

    photo_folder(tmp_path / "photos", 4, lambda i: (150 + 10 * i, 190))
    out = tmp_path / "report"
    assert main(["demo", "--model", "torchvision:resnet18", "--data", str(tmp_path / "photos"),
                 "--quick", "--n", "2", "--out", str(out)]) == 0
    root = out / "resnet18"
    for view in ("layers", "activations", "filters", "stats", "scan", "tsne", "occlusion",
                 "saliency", "guided_backprop", "grad_cam", "integrated_gradients", "inversion",
                 "class_model", "featvis", "correspondence", "fool"):
        assert (root / view / "manifest.json").is_file(), view
    # the folder's classes are none of ImageNet's: the views that measure accuracy are skipped
    # (the summary says why), not shown empty
    assert not (root / "attributes").exists() and not (root / "robustness").exists()
    index = out / "site" / "index.html"
    html = index.read_text()
    assert "random weights, seed 0" in html
    tsne = (out / "site" / "runs" / "resnet18_tsne" / "index.html").read_text()
    assert '"names": ["animal", "object", "scene"]' in tsne
    with browser() as b:
        for p in pages_to_check(out / "site"):
            page, errors = open_page(b, p.as_uri())
            assert errors == [], (p, errors)
            assert broken_images(page) == [], p
            assert page.evaluate(PICTURE_WIDTHS) == [], p
            page.close()
