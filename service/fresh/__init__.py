"""Fresh without retraining (issue 16): new items, new users and new interactions change
recommendations within seconds. The math is trainer/foldin (numpy); this package holds the
service side: folded items beside the bundle's rows (items.py), folded user queries (users.py),
SQL <-> live model (sync.py for items; user_sync.py and user_folds.py for users), the calls
into the math (fold.py), what the API shows (schemas.py, status.py)."""
