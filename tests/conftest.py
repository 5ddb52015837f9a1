"""Shared fixtures: small deterministic models and real photos shipped by scikit-image."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torchvision

from hdm.bench.faces import DlibReference
from hdm.io.images import load_rgb, to_model_input

torch.set_num_threads(max(1, torch.get_num_threads()))


@pytest.fixture(scope="session")
def resnet50():
    """A torchvision ResNet-50 with seeded random weights (no download), in eval mode."""
    torch.manual_seed(0)
    return torchvision.models.resnet50().eval()


@pytest.fixture(scope="session")
def photos():
    """(2, 3, 224, 224) ImageNet-normalised batch of scikit-image's astronaut and coffee."""
    from skimage import data

    return torch.cat([to_model_input(load_rgb(img), size=224) for img in (data.astronaut(), data.coffee())])


class SmallCNN(nn.Module):
    """A tiny ReLU CNN (piecewise linear after every layer) for exact derivative checks."""

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(4, 2, 3, padding=1, stride=2), nn.ReLU())
        self.head = nn.Sequential(
            nn.Conv2d(2, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 5, 1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, num_classes),
        )

    def forward(self, x):
        return self.head(self.block(self.stem(x)))


@pytest.fixture
def small_cnn():
    torch.manual_seed(1)
    return SmallCNN().double().eval()


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a.ravel(), b.ravel()).statistic)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: MTCNN's many small operations run about 10x slower with two threads on a
    busy two-core machine (2 s against 28 s for the face behaviour test when measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def dlib_reference():
    """dlib's own detector, 5-point shape predictor and face-recognition model (the reference of hdm.faces)."""
    return DlibReference()
