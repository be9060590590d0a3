"""Bau et al. §3.2's random rotation of a layer's units (`dissect.rotated`): an orthogonal map
of the same activations, on a copy; the model given is left alone."""
from __future__ import annotations

import pytest
import torch

from conftest import all_hooks, assert_unchanged, snapshot
from convlens import load_model
from convlens.errors import ConvlensError
from convlens.hooks import capture
from convlens.techniques.concepts.dissect import random_rotation, rotated


def test_random_rotation_is_orthogonal_and_seeded():
    q = random_rotation(24, seed=3)
    assert torch.allclose(q @ q.T, torch.eye(24), atol=1e-5)
    assert torch.equal(q, random_rotation(24, seed=3))
    assert not torch.allclose(q, random_rotation(24, seed=4))


def test_rotated_copy_gives_q_times_the_activations_and_keeps_their_geometry():
    lens = load_model("builtin:shapes-net")
    before = snapshot(lens)
    twin = rotated(lens, "features.7", seed=1)
    x = torch.randn(3, *lens.input_size)
    with torch.no_grad(), capture(lens, ["features.7"]) as a, \
            capture(twin, ["features.7"]) as b:
        lens(x)
        twin(x)
    q = random_rotation(a["features.7"].shape[1], 1)
    want = torch.einsum("uc,nchw->nuhw", q, a["features.7"])
    assert torch.allclose(b["features.7"], want, atol=1e-5)
    # the same information: norms per position and distances between images are kept
    assert torch.allclose(b["features.7"].norm(dim=1), a["features.7"].norm(dim=1), atol=1e-4)
    fa, fb = a["features.7"].flatten(1), b["features.7"].flatten(1)
    assert torch.allclose(torch.cdist(fa, fa), torch.cdist(fb, fb), atol=1e-3)
    assert_unchanged(lens, before)
    assert not all_hooks(lens)
    assert "rotated" in twin.name


def test_rotated_refuses_a_bare_module():
    with pytest.raises(ConvlensError, match="Lens"):
        rotated(torch.nn.Conv2d(1, 1, 1), "weight")
