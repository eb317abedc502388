"""Importers: turn raw sources into a dataset bundle; each returns the written path."""

from trainer.data.importers.movielens import import_movielens
from trainer.data.importers.plain_csv import import_csv
from trainer.data.importers.synth import import_synth

__all__ = ["import_csv", "import_movielens", "import_synth"]
