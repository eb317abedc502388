"""Response encoding: orjson, for every JSON body the service writes."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse, Response

from service.schemas import ErrorOut

JSON = "application/json"


class OrjsonResponse(JSONResponse):
    """JSONResponse rendered by orjson (numpy scalars and arrays allowed)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def json_bytes(body: bytes, status_code: int = 200) -> Response:
    """An already encoded JSON body (cache hits, the recommendation hot path)."""
    return Response(body, status_code=status_code, media_type=JSON)


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error responses, all shaped ``{error, detail}``."""
    return {code: {"model": ErrorOut} for code in codes}
