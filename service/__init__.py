"""MARGO serving: FastAPI app, FAISS index, SQL model registry and hot swap.

Entry points: ``service.app.create_app`` (ASGI factory) and ``service.cli.main`` (``margo``).
"""
