"""HTTP API: one router per resource; ``api_router`` only includes them."""

from fastapi import APIRouter

from service.api import health, interactions, items, jobs, models, reliability, retrain, users

api_router = APIRouter()
for module in (users, items, reliability, models, interactions, retrain, jobs, health):
    api_router.include_router(module.router)

__all__ = ["api_router"]
