"""Health, readiness and metrics: for load balancers and Prometheus, not for clients."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from reverb.api.deps import ServicesDep
from reverb.api.problems import responses
from reverb.api.schemas import Health
from reverb.errors import ErrorCode, ReverbError
from reverb.metrics import CONTENT_TYPE, exposition

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", responses={200: {"model": Health}, 503: {"model": Health}})
async def readyz(services: ServicesDep) -> JSONResponse:
    checks = await services.health.check()
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response, responses=responses(401))
async def metrics(request: Request, services: ServicesDep) -> Response:
    """Prometheus text, of every worker. With METRICS_TOKEN set, only for
    `Authorization: Bearer <token>`."""
    token = services.settings.metrics_token
    if token is not None:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").encode()
        if not hmac.compare_digest(given, token.get_secret_value().encode()):
            raise ReverbError(
                ErrorCode.NOT_AUTHENTICATED,
                "send the metrics token: Authorization: Bearer <METRICS_TOKEN>",
                401,
                headers={"WWW-Authenticate": "Bearer"},
            )
    return Response(exposition(), media_type=CONTENT_TYPE)
