"""The architecture of the built-in models: AlexNet's shape scaled down (fashion-net,
shapes-net), and a small ResNet (stamps-net).

Five conv–ReLU layers with max pooling after the 1st, 2nd and 5th (as in AlexNet), then two
fully connected layers with ReLU — the second one's output, after its ReLU (``classifier.6``),
is the network's *code* (AlexNet's fc7) — and the linear classifier.
"""
from __future__ import annotations

from typing import Sequence

from torch import nn


class SmallAlexNet(nn.Module):
    """AlexNet-shaped ConvNet.

    Args:
        in_channels: 1 (grey) or 3 (RGB).
        widths: output channels of conv1..conv5.
        kernel1, stride1: conv1's kernel and stride (AlexNet: 11, 4); later convs are 3×3.
        fc: width of fc6 and fc7 (the code).
        flat: spatial side after the last pooling (input side / total stride).
    """

    def __init__(self, in_channels: int, widths: Sequence[int], kernel1: int, stride1: int,
                 fc: int, classes: int, flat: int, dropout: float = 0.3):
        super().__init__()
        c1, c2, c3, c4, c5 = widths
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel1, stride1, padding=kernel1 // 2),  # 0 conv1
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1),                                   # 3 conv2
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 3, padding=1),                                   # 6 conv3
            nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, 3, padding=1),                                   # 8 conv4
            nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, 3, padding=1),                                   # 10 conv5
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),                                                   # 12 pool5
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(c5 * flat * flat, fc),                                   # 2 fc6
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc, fc),                                                 # 5 fc7
            nn.ReLU(inplace=True),                                             # 6 the code
            nn.Linear(fc, classes),                                            # 7 fc8
        )

        # He initialisation (as torchvision's VGG): PyTorch's default is too timid for a
        # plain deep ReLU stack and slows the first epochs.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.classifier(self.features(x))


def fashion_net() -> SmallAlexNet:
    """28×28 grey → 10 Fashion-MNIST classes."""
    return SmallAlexNet(1, (32, 64, 128, 128, 64), kernel1=5, stride1=1, fc=256, classes=10, flat=3)


def shapes_net() -> SmallAlexNet:
    """64×64 RGB → 8 shape classes."""
    return SmallAlexNet(3, (32, 64, 96, 96, 64), kernel1=5, stride1=2, fc=256, classes=8, flat=4)


class BasicBlock(nn.Module):
    """ResNet's basic block (He et al. 2016): two 3×3 conv–BN, a shortcut (1×1 conv–BN where the
    shape changes), ReLU after the sum. Every ReLU is its own module, so each is a named layer."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (nn.Identity() if cin == cout and stride == 1 else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                       nn.BatchNorm2d(cout)))
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(y + self.shortcut(x))


class SmallResNet(nn.Module):
    """A ResNet-18-shaped network, one basic block per stage instead of two.

    stem (5×5 conv stride 2, BN, ReLU, 2×2 max pool) → layer1..layer4 (widths w, 2w, 4w, 8w;
    strides 1, 2, 2, 2) → global average pool → dropout → fc. The code is the pooled
    ``8w`` vector (``pool``'s output).
    """

    def __init__(self, width: int, classes: int, in_channels: int = 3, dropout: float = 0.3):
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w, 5, 2, 2, bias=False), nn.BatchNorm2d(w),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.layer1 = BasicBlock(w, w, 1)
        self.layer2 = BasicBlock(w, 2 * w, 2)
        self.layer3 = BasicBlock(2 * w, 4 * w, 2)
        self.layer4 = BasicBlock(4 * w, 8 * w, 2)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(8 * w, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(self.dropout(self.pool(x)))


def stamps_net() -> SmallResNet:
    """96×96 RGB → 6 ``builtin:stamps`` classes (photographs of objects).

    A small ResNet rather than the AlexNet shape of the other two: with 13 to 45 training
    objects per class, batch normalisation, residual blocks and global pooling recognised unseen
    objects far better for the same training (docs/models.md, "How the recipe was chosen").
    """
    return SmallResNet(24, classes=6)
