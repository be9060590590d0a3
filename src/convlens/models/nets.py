"""The architecture of the built-in models: AlexNet's shape, scaled down.

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


def stamps_net() -> SmallAlexNet:
    """96×96 RGB → 6 ``builtin:stamps`` classes (photographs of objects).

    conv1 is 7×7 with stride 4, as AlexNet's 11×11/4 on 227 px: 1.65 times cheaper to train on
    the CPU than stride 2, and as accurate on unseen stamps in the recipe search (docs/models.md).
    """
    return SmallAlexNet(3, (32, 64, 96, 96, 64), kernel1=7, stride1=4, fc=256, classes=6, flat=3)
