"""The learner's HTTP API (FastAPI) over :class:`efm_trainer.learner.Learner`; docs/stage2_contract.md
fixes the routes. Every request needs ``Authorization: Bearer <token>``; anything else gets 401 and
changes nothing. Run it with ``efm learner serve`` (loopback by default); under ``torchrun`` rank 0
serves and the other ranks follow its updates.
"""
from __future__ import annotations

import secrets
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field

from .learner import BadEpisode, EpisodeConflict, Learner, LearnerError, UnknownVersion

API = "/v1"


class CurrentRequest(BaseModel):
    version: str


class EvaluationRequest(BaseModel):
    version: str
    episodes: int = Field(ge=1)
    successes: int = Field(ge=0)
    seeds: list[int] | int | None = None


def create_app(learner: Learner, token: str) -> FastAPI:
    if not token:
        raise LearnerError("the learner needs a non-empty token")
    expected = token.encode()

    def authorized(request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), expected):
            raise HTTPException(401, "missing or wrong token: send Authorization: Bearer <the learner's token>",
                                headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(title="efm learner", version="1", dependencies=[Depends(authorized)])

    @app.exception_handler(UnknownVersion)
    async def _unknown(_, exc):
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(BadEpisode)
    async def _bad(_, exc):
        return JSONResponse({"detail": str(exc), "reason": exc.reason}, status_code=400)

    @app.exception_handler(LearnerError)
    async def _invalid(_, exc):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(EpisodeConflict)
    async def _conflict(_, exc):
        return JSONResponse({"detail": str(exc), "reason": exc.reason}, status_code=409)

    @app.get(f"{API}/spec")
    def spec():
        return learner.spec()

    @app.put(f"{API}/episodes/{{episode_id}}")
    async def put_episode(episode_id: str, request: Request):
        body = await request.body()
        # reading a bag decodes every frame: off the event loop, so other requests keep flowing
        receipt = await run_in_threadpool(learner.receive_episode, episode_id, body,
                                          request.headers.get("x-content-sha256", ""))
        if receipt.status == "duplicate":
            return JSONResponse({"status": "duplicate"}, status_code=200)
        answer = {"status": receipt.status, "trained": receipt.trained}
        if receipt.reason:
            answer["reason"] = receipt.reason
        return JSONResponse(answer, status_code=201 if receipt.status == "accepted" else 200)

    @app.get(f"{API}/versions")
    def versions():
        return learner.list_versions()

    @app.get(f"{API}/versions/{{version}}/files/{{name}}")
    def version_file(version: str, name: str):
        return FileResponse(learner.version_file(version, name), media_type="application/octet-stream")

    @app.get(f"{API}/status")
    def status():
        return learner.status()

    @app.post(f"{API}/current")
    def set_current(body: CurrentRequest):
        return learner.set_current(body.version)

    @app.post(f"{API}/evaluations")
    def evaluations(body: EvaluationRequest):
        return learner.record_evaluation(body.version, body.episodes, body.successes, body.seeds)

    return app


def load_or_create_token(token_file: str | None, learner_dir: str | Path) -> tuple[str, Path]:
    """The token from ``token_file``; without one, ``LEARNER_DIR/token`` (created, owner-only, on first use)."""
    path = Path(token_file) if token_file else Path(learner_dir) / "token"
    if not path.is_file():
        if token_file:
            raise LearnerError(f"--token-file {path} does not exist; write a secret into it (one line)")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32) + "\n")
    token = path.read_text().strip()
    if not token:
        raise LearnerError(f"token file {path} is empty; write a secret into it (one line)")
    return token, path
