"""SQL storage: tables (``tables``), engine and sessions (``session``), queries (``crud``),
schema migrations (``migrate``, scripts under the repository's ``migrations/``)."""
