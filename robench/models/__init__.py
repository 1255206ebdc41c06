"""Model registry: ``mnist-cnn``, ``digits-cnn``, ``wrn-28-2`` (PROTOCOL.md, "Models").

Every model takes pixels in [0, 1], normalises them itself and returns logits (B, K).
"""

from __future__ import annotations

from torch import nn

from robench.models.heads import HEADS, UnitLinear, make_head
from robench.models.small_cnn import SmallCNN
from robench.models.wrn import WideResNet
from robench.registry import Registry

MODELS: Registry[nn.Module] = Registry("architecture")


@MODELS.register("mnist-cnn")
def mnist_cnn(num_classes: int, head: str, mean: tuple, std: tuple) -> nn.Module:
    """Elsayed et al.'s MNIST network on 28×28 grey images (also fashion-mnist)."""
    return SmallCNN(num_classes, 28, 1, head, mean, std)


@MODELS.register("digits-cnn")
def digits_cnn(num_classes: int, head: str, mean: tuple, std: tuple) -> nn.Module:
    """The same layers on 8×8 digits (FC input 2·2·64)."""
    return SmallCNN(num_classes, 8, 1, head, mean, std)


@MODELS.register("wrn-28-2")
def wrn_28_2(num_classes: int, head: str, mean: tuple, std: tuple) -> nn.Module:
    """Pre-activation WRN-28-2 on 32×32 RGB (cifar10: K = 10, imagenet32: K = 1000)."""
    return WideResNet(num_classes, 28, 2, head, mean, std)


def create_model(arch: str, num_classes: int, head: str, mean: tuple, std: tuple) -> nn.Module:
    """Build ``arch`` with a ``head`` and the dataset's normalisation."""
    if head not in HEADS:
        make_head(head, 1, 1)  # raises the UserError listing valid heads
    return MODELS.create(arch, num_classes, head, tuple(mean), tuple(std))


__all__ = ["MODELS", "HEADS", "UnitLinear", "create_model", "make_head"]
