"""A small trained model on the synthetic task, shared by the pruning-method tests."""

from __future__ import annotations

import pytest

from neuroprune.data import make_synthetic
from neuroprune.snn import model as snn_model
from neuroprune.snn.train import TrainConfig, train

SMALL_CONFIG = TrainConfig(epochs=4, batch_size=32, lr=1e-2, steps=8, seed=0, validate=False)


@pytest.fixture(scope="session")
def small_task_data():
    return make_synthetic(num_classes=4, shape=(1, 8, 8), n_per_class=60, seed=0)


@pytest.fixture(scope="session")
def trained_small(small_task_data):
    """(model, dataset, config): c6,c8s2,f,d4 trained a few epochs on the synthetic task."""
    model = snn_model.build("c6,c8s2,f", (1, 8, 8), num_classes=4, seed=0)
    train(model, small_task_data, SMALL_CONFIG, progress=False)
    return model, small_task_data, SMALL_CONFIG
