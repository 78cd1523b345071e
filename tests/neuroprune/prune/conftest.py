"""Small trained models on the synthetic task, shared by the pruning-method tests."""

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


@pytest.fixture(scope="session")
def synthetic_6x6():
    """Four classes of 1x6x6 synthetic images, 30 each (the unstructured methods' task)."""
    return make_synthetic(num_classes=4, shape=(1, 6, 6), n_per_class=30, seed=0)


@pytest.fixture(scope="session")
def trained_c4(synthetic_6x6):
    """c4,f trained a few epochs on :func:`synthetic_6x6` (tests copy it before changing it)."""
    model = snn_model.build("c4,f", (1, 6, 6), num_classes=4, seed=0)
    train(model, synthetic_6x6, TrainConfig(epochs=4, batch_size=32, lr=1e-2, steps=8, validate=False), progress=False)
    return model


@pytest.fixture(scope="session")
def trained_three_class():
    """(model, dataset, config): c8,c12s2,f trained on three synthetic classes (the
    channel-pruning methods' end-to-end runs; the methods leave the model untouched)."""
    data = make_synthetic(num_classes=3, n_per_class=40, seed=1)
    config = TrainConfig(epochs=4, batch_size=16, steps=8, lr=1e-2, seed=0, validate=False)
    model = snn_model.build("c8,c12s2,f", data.input_shape, num_classes=3, seed=0)
    train(model, data, config, progress=False)
    return model, data, config
