"""Small datasets with known structure, generated once per test session."""

from pathlib import Path

import pytest
import torch

from trainer.data.dataset import Dataset, load_dataset
from trainer.data.importers import import_synth


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # tests run beside other processes; torch's spin-waiting threads collapse when oversubscribed
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """300 users x 200 items, image 48-d + text 32-d; 30% of items have a noise image row."""
    out = tmp_path_factory.mktemp("data") / "tiny"
    return import_synth(
        out,
        n_users=300,
        n_items=200,
        n_interactions=6000,
        modalities={"image": 48, "text": 32},
        corrupt_fraction=0.3,
        corrupt_modality="image",
        seed=1,
        progress=False,
    )


@pytest.fixture(scope="session")
def tiny(tiny_bundle) -> Dataset:
    return load_dataset(tiny_bundle)
