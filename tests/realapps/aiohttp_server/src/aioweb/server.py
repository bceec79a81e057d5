"""aiohttp's web.run_app: it handles SIGINT/SIGTERM itself."""

import os

from aiohttp import web

routes = web.RouteTableDef()


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    return web.Response(text="hello from aiohttp\n")


@routes.get("/json")
async def as_json(request: web.Request) -> web.Response:
    return web.json_response({"app": "aioweb", "path": request.path})


def main() -> None:
    app = web.Application()
    app.add_routes(routes)
    web.run_app(
        app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8080")),
        print=None,
    )


if __name__ == "__main__":
    main()
