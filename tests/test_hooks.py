"""capture(): values worked out by hand, gradients, no leaks, model state unchanged."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import HandNet, all_hooks, assert_unchanged, snapshot
from convlens import ConvlensError, capture

X = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
CONV = torch.tensor([[-2.0, 2.0], [10.0, 14.0]])
RELU = torch.tensor([[0.0, 2.0], [10.0, 14.0]])
GRAD_RELU = torch.tensor([[-1.0, -1.0], [0.0, 0.0]])
GRAD_CONV = torch.tensor([[0.0, -1.0], [0.0, 0.0]])


def test_activations_by_hand(hand_lens):
    with capture(hand_lens, ["conv", "act"]) as cap:
        out = hand_lens(X)
    assert out.item() == 4.0
    # The conv output is kept as it was before the in-place ReLU overwrote it.
    assert torch.equal(cap["conv"][0, 0], CONV)
    assert torch.equal(cap["act"][0, 0], RELU)


@pytest.mark.parametrize("inplace", [True, False])
def test_gradients_by_hand(inplace):
    net = HandNet(inplace=inplace)
    with capture(net, ["conv", "act"], grads=True) as cap:
        net(X).sum().backward()
    assert torch.equal(cap.grad("act")[0, 0], GRAD_RELU)
    assert torch.equal(cap.grad("conv")[0, 0], GRAD_CONV)


def test_gradients_with_autograd_grad_and_frozen_params(hand_lens):
    for p in hand_lens.parameters():
        p.requires_grad_(False)
    x = X.clone().requires_grad_(True)
    with capture(hand_lens, "conv", grads=True) as cap:
        (gx,) = torch.autograd.grad(hand_lens(x).sum(), x)
    assert torch.equal(cap.grad("conv")[0, 0], GRAD_CONV)
    # d logit / dx: the conv gradient spread by the all-ones 2x2 kernel.
    expected = F.conv_transpose2d(GRAD_CONV.view(1, 1, 2, 2), torch.ones(1, 1, 2, 2))
    assert torch.equal(gx, expected)


def test_no_grad_input_is_a_clear_error(hand_lens):
    for p in hand_lens.parameters():
        p.requires_grad_(False)
    with pytest.raises(ConvlensError, match="requires_grad"):
        with capture(hand_lens, "conv", grads=True):
            hand_lens(X)
    assert all_hooks(hand_lens) == 0


def test_module_called_twice_records_both_calls():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Linear(1, 1, bias=False)
            with torch.no_grad():
                self.scale.weight.fill_(2.0)

        def forward(self, x):
            return self.scale(self.scale(x))

    net = Twice()
    with capture(net, "scale") as cap:
        net(torch.tensor([[3.0]]))
    assert [t.item() for t in cap.all("scale")] == [6.0, 12.0]
    assert cap["scale"].item() == 12.0  # the last call


def test_functional_relu_model():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 2)
            with torch.no_grad():
                self.conv.weight.fill_(1.0)
                self.conv.bias.fill_(-14.0)

        def forward(self, x):
            return F.relu(self.conv(x)).sum(dim=(1, 2, 3))

    net = Functional()
    with capture(net, "conv", grads=True) as cap:
        net(X).sum().backward()
    assert torch.equal(cap["conv"][0, 0], CONV)
    assert torch.equal(cap.grad("conv")[0, 0], (CONV > 0).float())


def test_no_hook_left_after_an_error(hand_lens):
    before = snapshot(hand_lens)
    with pytest.raises(RuntimeError, match="boom"):
        with capture(hand_lens, ["conv", "act"], grads=True):
            hand_lens(X.clone().requires_grad_())
            raise RuntimeError("boom")
    assert_unchanged(hand_lens, before)


def test_model_state_unchanged(hand_lens):
    hand_lens.train()
    hand_lens.model.conv.weight.grad = torch.full_like(hand_lens.model.conv.weight, 0.5)
    before = snapshot(hand_lens)
    with capture(hand_lens, ["conv", "act"], grads=True):
        hand_lens(X).sum().backward()   # accumulates into .grad inside the block
    assert_unchanged(hand_lens, before)
    assert hand_lens.training


def test_tensor_hooks_removed_after_block(hand_lens):
    x = X.clone().requires_grad_()
    with capture(hand_lens, "conv", grads=True) as cap:
        out = hand_lens(x).sum()
    out.backward()  # backward after the block must not record into the capture any more
    with pytest.raises(ConvlensError, match="no gradient"):
        cap.grad("conv")


def test_unknown_layer_names_close_matches(hand_lens):
    with pytest.raises(ConvlensError, match="did you mean 'conv'"):
        with capture(hand_lens, "conv1"):
            pass
    assert all_hooks(hand_lens) == 0


def test_hooks_do_not_accumulate(hand_lens):
    for _ in range(5):
        with capture(hand_lens, ["conv", "act"]):
            hand_lens(X)
    assert all_hooks(hand_lens) == 0
