"""The web app: one page, a JSON API, and the guards around uploads.

``create_app(model_dirs)`` loads the models once. ``POST /api/predict`` (multipart: ``file``,
``model``, optional ``slice`` and ``target``) answers the JSON the page draws; ``GET
/api/models`` lists the model cards; ``GET /healthz`` says the server is up. Every bad upload is
a 4xx JSON ``{"error": ...}`` and the server carries on; each request's files live in a
temporary folder removed when it ends; inference is serialised per model.
"""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Form, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from braintumor import __version__
from braintumor.errors import BrainTumorError, DataError, ImageReadError
from braintumor.serve.limits import DEFAULT_MAX_CONCURRENT, DEFAULT_MAX_PIXELS, HeavyWork
from braintumor.serve.pipeline import ServedModel, load_models, predict_upload
from braintumor.serve.security import UploadError, sniff_upload

_CHUNK = 1 << 20


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413 before the app parses any of them.

    The declared Content-Length is checked first; a body sent without one (chunked) is read up
    to the limit and replayed to the app, so a lying or missing header cannot get past it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await self._too_large(send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        limit = f"{self.max_bytes / 2**20:g} MiB"
        response = JSONResponse({"error": f"upload larger than {limit}"}, status_code=413)
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def _page() -> str:
    return resources.files("braintumor.serve").joinpath("static/index.html").read_text("utf-8")


def _save_upload(upload: UploadFile, dest: Path) -> int:
    size = 0
    with open(dest, "wb") as out:
        while chunk := upload.file.read(_CHUNK):
            size += len(chunk)
            out.write(chunk)
    return size


def create_app(
    model_dirs: list[str | Path],
    max_upload_mb: float = 20,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
) -> FastAPI:
    """The FastAPI app serving ``model_dirs`` (``PATH`` or ``NAME=PATH``; loaded now, so a bad
    folder fails here).

    ``max_pixels`` bounds an upload's decoded size (checked from its header); at most
    ``max_concurrent`` requests decode and infer at once (see :mod:`braintumor.serve.limits`).
    """
    models: dict[str, ServedModel] = load_models(list(model_dirs))
    heavy = HeavyWork(max_concurrent)
    app = FastAPI(title="braintumor", version=__version__, docs_url=None, redoc_url=None)

    @app.exception_handler(UploadError)
    async def _upload_error(_request: Any, error: UploadError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @app.exception_handler(BrainTumorError)
    async def _user_error(_request: Any, error: BrainTumorError) -> JSONResponse:
        # Unreadable images and inputs that do not fit the model are the client's to fix.
        return JSONResponse({"error": str(error).splitlines()[0]}, status_code=422)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return _page()

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "models": len(models), "version": __version__}

    @app.get("/api/models")
    def list_models() -> list[dict[str, Any]]:
        return [served.card() for served in models.values()]

    @app.post("/api/predict")
    def predict(
        file: UploadFile = File(...),
        model: str | None = Form(None),
        slice: str = Form("mid"),
        target: str | None = Form(None),
    ) -> JSONResponse:
        if model is None and len(models) == 1:
            model = next(iter(models))
        if model not in models:
            known = ", ".join(models)
            raise UploadError(404 if model else 400, f"unknown model {model!r}; served: {known}")
        if slice != "mid" and not slice.isdigit():
            raise UploadError(400, f"slice must be 'mid' or a non-negative integer, got {slice!r}")
        served = models[model]
        filename = Path(file.filename or "upload").name
        with tempfile.TemporaryDirectory(prefix="braintumor-serve-") as folder:
            work = Path(folder)
            path = work / "upload"
            if _save_upload(file, path) == 0:
                raise UploadError(400, "the uploaded file is empty")
            kind = sniff_upload(path)
            try:
                with heavy.slot(), served.lock:
                    result = predict_upload(
                        served,
                        path,
                        kind,
                        work,
                        filename,
                        slice_=slice,
                        target=target or None,
                        max_pixels=max_pixels,
                    )
            except (ImageReadError, DataError) as error:
                # Name the file as the user knows it, not by its temporary path (a NIfTI was
                # renamed with its suffix before reading).
                message = str(error)
                for used in (f"{path}.nii.gz", f"{path}.nii", str(path)):
                    message = message.replace(used, filename)
                raise UploadError(422, message.replace(folder, "upload")) from None
        return JSONResponse(result)

    app.add_middleware(BodyLimit, max_bytes=int(max_upload_mb * 2**20))
    app.state.models = models
    return app
