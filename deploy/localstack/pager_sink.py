"""A development stand-in for a paging provider: accepts Events-v2-shaped POSTs and prints them.

Only for the local stack. It prints what notifications sends (opaque ids and reason codes; the
page body carries no PHI by design).
"""

from __future__ import annotations

import argparse
import json

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

received: list[dict[str, object]] = []


async def pages(request: Request) -> JSONResponse:
    body = await request.json()
    received.append(body)
    print(json.dumps({"page": body, "traceparent": request.headers.get("traceparent")}), flush=True)
    return JSONResponse({"status": "success", "dedup_key": body.get("dedup_key")}, status_code=202)


async def list_pages(_: Request) -> JSONResponse:
    return JSONResponse(received)


app = Starlette(
    routes=[Route("/pages", pages, methods=["POST"]), Route("/pages", list_pages, methods=["GET"])]
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8199)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
