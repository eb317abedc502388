"""Fold-in: new items and users placed in a trained model's scoring space without a retrain.

numpy/scipy only (the API process imports it; it must never import torch).

    fold_in_items(bundle, features) -> FoldedItems     trainer/foldin/items.py
    fold_in_items(bundle, features, users=[ItemUsers, ...])   with the interactions posted
                                                       for them (trainer/foldin/interactions.py)
    fold_in_user(bundle, item_rows, ...) -> q [M*d]    trainer/foldin/users.py
    UserFoldIn.fold_in_many([UserInput, ...]) -> [U, M*d]   many users in stacked solves

Errors are ValueErrors: ``FoldInInputError`` (bad input; ``.item`` and ``.modality`` name
where) and ``FoldInUnavailable`` (a bundle without fold-in state, e.g. an older format).
"""

from trainer.bundle_foldin import FoldInError, FoldInInputError, FoldInUnavailable
from trainer.foldin.interactions import ItemUsers, has_user_out
from trainer.foldin.items import FoldedItems, ItemFoldIn, fold_in_items
from trainer.foldin.users import UserFoldIn, UserInput, UserInputError, fold_in_user

__all__ = [
    "FoldInError",
    "FoldInInputError",
    "FoldInUnavailable",
    "FoldedItems",
    "ItemFoldIn",
    "ItemUsers",
    "UserFoldIn",
    "UserInput",
    "UserInputError",
    "fold_in_items",
    "fold_in_user",
    "has_user_out",
]
