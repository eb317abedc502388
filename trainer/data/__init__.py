"""Dataset layer: the MMRec-layout bundle, filtering and splitting, text features, importers.

dataset.py    Dataset, load_dataset, write_dataset (the bundle contract)
split.py      implicit_positives, k_core, split_per_user
text.py       encode_texts (offline all-MiniLM-L6-v2)
importers/    import_movielens, import_csv, import_synth
tables.py, mapping.py, checks.py   parsing and validation helpers
"""

from trainer.data.dataset import Dataset, load_dataset, write_dataset
from trainer.data.importers import import_csv, import_movielens, import_synth
from trainer.data.split import implicit_positives, k_core, split_per_user
from trainer.data.text import encode_texts

__all__ = [
    "Dataset",
    "encode_texts",
    "implicit_positives",
    "import_csv",
    "import_movielens",
    "import_synth",
    "k_core",
    "load_dataset",
    "split_per_user",
    "write_dataset",
]
