"""Users' own concepts as masks beside their images (issue 27): a manifest's ``mask`` and
``mask:<category>:<name>`` columns, masks through the image's preprocessing geometry, and a
dissection whose answer is worked out by hand."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from convlens import Lens, RunSettings, load_data
from convlens.data.files import BadMaskWarning
from convlens.data.images import fit_geometry, preprocess_mask
from convlens.errors import ConvlensError
from convlens.techniques.concepts.dissect import dissect
from convlens.techniques.concepts.labels import Vocabulary, concept_masks

pytestmark = pytest.mark.usefixtures("one_thread")

GREY, RED, GREEN = (128, 128, 128), (255, 0, 0), (0, 255, 0)


def picture(w: int, h: int, squares=()) -> np.ndarray:
    """``(h, w, 3)`` uint8 grey with coloured boxes ``(colour, x0, y0, x1, y1)``."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = GREY
    for colour, x0, y0, x1, y1 in squares:
        img[y0:y1, x0:x1] = colour
    return img


def mask(w: int, h: int, *boxes) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    for x0, y0, x1, y1 in boxes:
        m[y0:y1, x0:x1] = 255
    return m


def save(path, arr: np.ndarray) -> str:
    Image.fromarray(arr).save(path)
    return path.name


def plain_lens(h: int, w: int) -> Lens:
    return Lens(nn.Identity(), mean=(0.0,) * 3, std=(1.0,) * 3, input_size=(3, h, w))


@pytest.mark.parametrize("size, box, inp", [
    ((96, 48), (40, 16, 56, 32), (24, 24)),   # wide, shrunk by 2: 48x24, 12 px cut each side
    ((30, 20), (10, 5, 20, 15), (32, 32)),    # wide, grown by 1.6: 48x32, 8 px cut each side
    ((20, 50), (4, 30, 12, 38), (16, 16)),    # tall, shrunk by 0.8: 16x40, 12 px cut top
])
def test_a_mask_lands_on_its_square_after_preprocessing(size, box, inp):
    w, h = size
    img = picture(w, h, [(RED, *box)])
    m = mask(w, h, box)
    lens = plain_lens(*inp)
    x = lens.preprocess(Image.fromarray(img))
    red = (x[1] < 0.25).numpy()  # more than half red: green below half of grey's
    got = preprocess_mask(m, inp)
    assert got.dtype == bool and got.shape == inp
    assert red.any() and np.array_equal(got, red)
    # a plain resize to the input size (no crop) misses the square
    naive = F.interpolate(torch.from_numpy(m > 0)[None, None].float(), size=inp,
                          mode="nearest")[0, 0].numpy() > 0.5
    assert not np.array_equal(naive, red)


def test_fit_geometry_and_preprocess_mask_checks():
    assert fit_geometry(96, 48, 24, 24) == ((48, 24), (12, 0, 36, 24))
    assert fit_geometry(24, 24, 24, 24) == ((24, 24), (0, 0, 24, 24))
    assert preprocess_mask(np.eye(4), (4, 4)).dtype == bool
    with pytest.raises(ConvlensError):
        preprocess_mask(np.zeros((2, 3, 4)), (4, 4))


def test_manifest_mask_columns(tmp_path):
    (tmp_path / "m").mkdir()
    rows = []
    img = picture(24, 16, [(RED, 6, 4, 10, 8)])
    rows.append({"path": save(tmp_path / "a.png", img), "label": "thing", "background": "grass",
                 "mask": "m/" + save(tmp_path / "m" / "a_obj.png", mask(24, 16, (6, 4, 10, 8))),
                 "mask:part:square": "m/" + save(tmp_path / "m" / "a_sq.png",
                                                 mask(12, 8, (3, 2, 5, 4))),  # half scale
                 "mask:material:wood": ""})
    rows.append({"path": save(tmp_path / "b.png", img), "label": "thing", "background": "sand",
                 "mask": "m/missing.png",
                 "mask:part:square": "m/" + save(tmp_path / "m" / "b_sq.png",
                                                 mask(16, 16, (0, 0, 4, 4))),  # other aspect
                 "mask:material:wood": "m/" + save(tmp_path / "m" / "b_wood.png",
                                                   mask(24, 16, (0, 0, 24, 2)))})
    pd.DataFrame(rows).to_csv(tmp_path / "table.csv", index=False)
    ds = load_data(str(tmp_path / "table.csv"))
    assert ds.concepts == ["part:square", "material:wood"]
    assert ds.backgrounds == ["grass", "sand"]
    a, b = ds[0], ds[1]
    assert a.meta["mask"].dtype == bool and a.meta["mask"].sum() == 16
    assert np.array_equal(a.meta["concept_masks"]["part:square"], a.meta["mask"])
    assert "material:wood" not in a.meta["concept_masks"] and "mask_errors" not in a.meta
    assert "mask:part:square" not in a.meta                         # not a plain attribute
    assert "mask" not in b.meta and list(b.meta["concept_masks"]) == ["material:wood"]
    errors = b.meta["mask_errors"]
    assert len(errors) == 2 and "missing.png" in errors[0] and "b_sq.png" in errors[1]
    assert "aspect ratio" in errors[1]
    pd.DataFrame([{"path": "a.png", "mask:wheel": "x.png"}]).to_csv(tmp_path / "bad.csv",
                                                                    index=False)
    with pytest.raises(ConvlensError, match="mask:<category>:<name>"):
        load_data(str(tmp_path / "bad.csv"))


def test_own_concepts_in_the_vocabulary_and_masks():
    vocab = Vocabulary.build(["a"], ["grass"], colours=False,
                             concepts=["part:wheel", "texture:grass"])
    assert vocab.names == ["object:a", "texture:grass", "part:wheel"]
    assert vocab.categories["part:wheel"] == "part" and vocab.own == ["part:wheel",
                                                                       "texture:grass"]
    with pytest.raises(ConvlensError):
        Vocabulary.build([], concepts=["wheel"])
    obj = torch.zeros(1, 2, 2, dtype=torch.bool)
    obj[0, 0, 0] = True
    wheel = torch.tensor([[False, True], [False, False]])
    grass = torch.tensor([[False, False], [False, True]])
    m = concept_masks(vocab, torch.tensor([0]), obj, ["grass"], None, ["a"],
                      [{"part:wheel": wheel, "texture:grass": grass}])
    idx = vocab.index()
    assert torch.equal(m[0, idx["part:wheel"]], wheel)
    assert torch.equal(m[0, idx["texture:grass"]], ~obj[0])        # the union of both
    m = concept_masks(vocab, torch.tensor([-1]), None, None, None, [], [{}], size=(2, 2))
    assert not m.any()


class RedGreen(nn.Module):
    """1x1 conv, ReLU: unit 0 = relu(R - G - B - 0.5) is 0.5 on pure red and 0 on grey, green
    or any other colour here; unit 1 the same for green."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.act = nn.ReLU()
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, -1, -1], [-1, 1, -1]])[:, :, None, None])
            self.conv.bias.fill_(-0.5)

    def forward(self, x):
        return self.act(self.conv(x)).mean((2, 3))


@pytest.fixture
def square_table(tmp_path):
    """Six 24x16 images (the model's 16x16 input is their centre: columns 4..19), red squares
    and one green one; ``mask:part:square`` marks most red squares, ``mask:texture:grass`` the
    green one; one mask file is broken."""
    (tmp_path / "masks").mkdir()
    m = tmp_path / "masks"
    rows = [
        # 16 red pixels, marked exactly; the mask's extra block lies in the cropped-off columns
        (picture(24, 16, [(RED, 6, 4, 10, 8)]),
         save(m / "0.png", mask(24, 16, (6, 4, 10, 8), (0, 0, 2, 2))), ""),
        # 36 red pixels, marked by a mask at half scale
        (picture(24, 16, [(RED, 8, 6, 14, 12)]), save(m / "1.png", mask(12, 8, (4, 3, 7, 6))),
         ""),
        # 16 red pixels, not marked (empty cell)
        (picture(24, 16, [(RED, 12, 2, 16, 6)]), "", ""),
        # a green square, the grass
        (picture(24, 16, [(GREEN, 10, 8, 15, 13)]), "",
         save(m / "g.png", mask(24, 16, (10, 8, 15, 13)))),
        # 16 red pixels, marked with the 8 above them: 24 marked
        (picture(24, 16, [(RED, 14, 10, 18, 14)]), save(m / "4.png", mask(24, 16, (14, 8, 18, 14))),
         ""),
        # 4 red pixels, their mask file broken
        (picture(24, 16, [(RED, 5, 12, 7, 14)]), "broken.png", ""),
    ]
    (m / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    table = [{"path": save(tmp_path / f"{i}.png", img),
              "mask:part:square": f"masks/{sq}" if sq else "",
              "mask:texture:grass": f"masks/{g}" if g else ""}
             for i, (img, sq, g) in enumerate(rows)]
    pd.DataFrame(table).to_csv(tmp_path / "squares.csv", index=False)
    return tmp_path / "squares.csv"


def test_dissect_finds_the_red_square_unit(square_table):
    lens = Lens(RedGreen(), mean=(0.0,) * 3, std=(1.0,) * 3, input_size=(3, 16, 16),
                labels=["red", "green"])
    data = load_data(str(square_table), lens=lens)
    assert data.concepts == ["part:square", "texture:grass"]
    with pytest.warns(BadMaskWarning) as seen:
        res = dissect(lens, data, colours=False, run=RunSettings(progress=False, batch_size=4))
    assert any("broken.png" in str(w.message) for w in seen)
    assert res.params["bad_masks"] == 1 and res.params["images"] == 6
    assert res.params["categories"]["part:square"] == "part"
    units = res.units.set_index("unit")
    # threshold: the 8th largest of 6 * 256 values (q = 0.005) is 0.5, every red pixel;
    # red pixels 16 + 36 + 16 + 16 + 4 = 88, marked 16 + 36 + 24 = 76, both 16 + 36 + 16 = 68
    assert units.loc[0, "threshold"] == pytest.approx(0.5)
    assert units.loc[0, "concept"] == "part:square" and units.loc[0, "category"] == "part"
    assert units.loc[0, "iou"] == pytest.approx(68 / (88 + 76 - 68), abs=1e-12)
    assert units.loc[1, "concept"] == "texture:grass" and units.loc[1, "iou"] == 1.0
    assert units.detector.all()


def test_a_broken_mask_is_skipped_with_a_warning_not_an_error(square_table):
    data = load_data(str(square_table))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        item = data[5]                          # loading warns nothing; the pass warns
    assert "concept_masks" not in item.meta
    assert "broken.png" in item.meta["mask_errors"][0]
    assert item.image.shape == (3, 16, 24)
