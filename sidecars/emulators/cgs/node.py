"""CCF's node endpoint that clients poll until the service is up."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

router = APIRouter()


@router.get("/node/ready/app", status_code=204, response_class=Response)
async def ready() -> Response:
    return Response(status_code=204)
