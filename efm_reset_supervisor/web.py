"""The operator page: FastAPI routes over a :class:`~efm_reset_supervisor.console.Console`, served by uvicorn
on a thread of the supervisor node.

Every route but ``/healthz`` needs the token: ``Authorization: Bearer <token>``, ``?token=<token>`` (the URL
the node prints), or the ``efm_operator`` cookie that the page sets when opened with ``?token=``. Anything
else gets 401 and changes nothing; so does a malformed request (422), an unknown robot (404) or action (400).

  GET  /                               the page (static/index.html); without a token, a form that asks for it
  GET  /api/state                      the fleet snapshot (JSON): tiles, the "needs me" queue, totals
  GET  /api/events                     server-sent events: the snapshot whenever it changes (and every second)
  GET  /api/robots/{robot}/thumbnail   the latest camera thumbnail (JPEG); 404 before the first frame
  POST /api/robots/{robot}/{action}    action: reset_done, pause, resume, estop, label_success, label_failure;
                                       JSON body {"episode_id": "..."} optional: the episode the operator saw
  POST /api/queue/reset_done           reset done for the robot that has waited longest
  POST /api/estop                      e-stop every robot
Command answers: 200 {"robot", "action", "outcome": "accepted", "message"}; 409 refused (by the fleet's
checks or by the robot); 504 when the robot did not answer in time.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import socket
import threading
from importlib import resources
from typing import Annotated

from fastapi import Body, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict

from .console import CommandResult, Console
from .fleet import ACTIONS

COOKIE = "efm_operator"
EVENT_PERIOD_S = 1.0      # a snapshot at least this often, so times in state keep moving
EVENT_POLL_S = 0.1
STATUS_CODES = {"accepted": 200, "sent": 202, "refused": 409, "timeout": 504}

LOGIN_PAGE = """<!doctype html><html><head><meta name="viewport" content="width=device-width, initial-scale=1">
<title>efm operator: token needed</title></head><body style="font-family:sans-serif;padding:2em">
<h1>Operator page</h1><p>{why} Open the URL the reset supervisor printed, or enter its token.</p>
<form method="get" action="/"><input name="token" type="password" autofocus size="40">
<button type="submit">Open</button></form></body></html>"""


class CommandBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    episode_id: str = ""


def _static(name: str) -> str:
    return resources.files("efm_reset_supervisor").joinpath("static", name).read_text(encoding="utf-8")


def build_app(console: Console, token: str) -> FastAPI:
    if not token:
        raise ValueError("the operator page needs a token; an open page would let anyone reset or e-stop robots")
    app = FastAPI(title="efm reset supervisor", docs_url=None, redoc_url=None, openapi_url=None)

    def presented(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return header[7:].strip()
        return request.query_params.get("token") or request.cookies.get(COOKIE)

    def authorised(request: Request) -> bool:
        given = presented(request)
        return given is not None and hmac.compare_digest(given.encode(), token.encode())

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if request.url.path == "/healthz" or authorised(request):
            return await call_next(request)
        if request.url.path == "/":
            why = "Wrong token." if presented(request) else "This page needs a token."
            return HTMLResponse(LOGIN_PAGE.format(why=why), status_code=401)
        return JSONResponse({"detail": "missing or wrong token"}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    @app.get("/")
    def page(request: Request):
        response = HTMLResponse(_static("index.html"))
        if request.query_params.get("token"):  # remember it, so the page's own requests need no token in URLs
            response.set_cookie(COOKIE, request.query_params["token"], httponly=True, samesite="strict")
        return response

    @app.get("/static/{name}")
    def static(name: str):
        kinds = {"app.js": "text/javascript", "app.css": "text/css"}
        if name not in kinds:
            raise HTTPException(404, f"no static file {name!r}")
        return Response(_static(name), media_type=kinds[name])

    @app.get("/api/state")
    def state():
        return console.snapshot()

    @app.get("/api/events")
    async def events(request: Request):
        async def stream():
            seen, sent_at = None, 0.0
            loop = asyncio.get_running_loop()
            while not await request.is_disconnected():
                now = loop.time()
                if console.fleet.version != seen or now - sent_at >= EVENT_PERIOD_S:
                    seen, sent_at = console.fleet.version, now
                    yield f"data: {json.dumps(console.snapshot())}\n\n"
                await asyncio.sleep(EVENT_POLL_S)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    @app.get("/api/robots/{robot}/thumbnail")
    def thumbnail(robot: str):
        _known(console, robot)
        jpeg = console.fleet.thumbnail(robot)
        if not jpeg:
            raise HTTPException(404, f"no camera frame from {robot} yet")
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.post("/api/robots/{robot}/{action}")
    def command(robot: str, action: str, body: Annotated[CommandBody | None, Body()] = None):
        _known(console, robot)
        if action not in ACTIONS:
            raise HTTPException(400, f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
        result = console.command(robot, action, body.episode_id if body else "", source="web page")
        return _answer(result)

    @app.post("/api/queue/reset_done")
    def queue_head():
        return _answer(console.command_queue_head(source="web page"))

    @app.post("/api/estop")
    def estop_all():
        results = console.estop_all(source="web page")
        code = 200 if all(r.accepted for r in results) else 409
        return JSONResponse([r.__dict__ for r in results], status_code=code)

    return app


def _known(console: Console, robot: str) -> None:
    if robot not in console.robots:
        raise HTTPException(404, f"unknown robot {robot!r}; the fleet has {', '.join(console.robots)}")


def _answer(result: CommandResult) -> JSONResponse:
    return JSONResponse(result.__dict__, status_code=STATUS_CODES[result.outcome])


class WebServer:
    """uvicorn on a daemon thread; ``start()`` returns once it listens (port 0: a free port is chosen)."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 8080) -> None:
        import uvicorn

        self._socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
        except OSError as exc:
            self._socket.close()
            raise OSError(f"operator page cannot listen on {host}:{port}: {exc}; choose another web_port") from None
        self.host, self.port = host, self._socket.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name="operator-page", daemon=True)

    def url(self, token: str = "") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/" + (f"?token={token}" if token else "")

    def start(self, timeout_s: float = 10.0) -> WebServer:
        self._thread.start()
        waited = 0.0
        while not self._server.started and self._thread.is_alive() and waited < timeout_s:
            threading.Event().wait(0.02)  # uvicorn exposes no event for "listening"
            waited += 0.02
        if not self._server.started:
            raise RuntimeError(f"operator page did not start on {self.host}:{self.port}")
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5.0)
        self._socket.close()
