"""The per-pixel concepts of dissection (issue 27): colour names, object and texture masks."""
from __future__ import annotations

import torch

from convlens.techniques.concepts.labels import (
    PROTOTYPES,
    Vocabulary,
    colour_names,
    concept_masks,
    rgb_to_lab,
)


def test_lab_of_known_colours():
    lab = rgb_to_lab(torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    assert torch.allclose(lab[0], torch.tensor([100.0, 0.0, 0.0], dtype=torch.float64), atol=1e-2)
    assert torch.allclose(lab[1], torch.zeros(3, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(lab[2], torch.tensor([53.24, 80.09, 67.20], dtype=torch.float64),
                          atol=0.05)   # sRGB red's published Lab


def test_each_prototype_and_plain_colours_get_their_name():
    names = list(PROTOTYPES)
    protos = torch.tensor(list(PROTOTYPES.values()), dtype=torch.float32) / 255
    got = colour_names(protos.T.reshape(1, 3, 1, -1))[0, 0]
    assert [names[int(k)] for k in got] == names
    plain = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.5, 0.0], [1.0, 1.0, 0.0], [0.5, 0.5, 0.5]])
    got = colour_names(plain.T.reshape(1, 3, 1, -1))[0, 0]
    assert [names[int(k)] for k in got] == ["blue", "green", "yellow", "grey"]


def test_object_texture_and_colour_masks():
    vocab = Vocabulary.build(["circle", "square"], ["grass", "noise"])
    assert vocab.categories["object:square"] == "object"
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[:, 1:3, 1:3] = True
    pixels = torch.zeros(2, 3, 4, 4)
    pixels[:, 0] = 1.0  # all red
    m = concept_masks(vocab, torch.tensor([1, -1]), mask, ["grass", None], pixels,
                      ["circle", "square"])
    idx = vocab.index()
    assert torch.equal(m[0, idx["object:square"]], mask[0])
    assert not m[0, idx["object:circle"]].any()
    assert torch.equal(m[0, idx["texture:grass"]], ~mask[0])
    assert not m[1, idx["object:square"]].any() and not m[1, idx["texture:grass"]].any()
    assert m[:, idx["colour:red"]].all() and not m[:, idx["colour:blue"]].any()
