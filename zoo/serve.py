"""``daguerre serve``: restoration over HTTP (FastAPI under uvicorn) and a page to use it.

Endpoints: ``POST /v1/restore`` (multipart field ``file``; ``scratches=auto|all|none``, as ``daguerre restore --scratches``;
``anchor=true|false``, the bundle's tone anchoring, on by default; ``format=png|json``), ``GET /v1/models``, ``GET /healthz``, ``GET /`` (the page).

The host is protected: uploads are capped in bytes (streamed, refused past the cap) and in
pixels (checked from the header, before the image is decoded: decompression bombs), at most
``workers`` restorations run at once with a bounded queue behind them (beyond it: 503 with
Retry-After), each request has a timeout, and every bad request is a 4xx JSON error: the server
keeps serving.
"""

from __future__ import annotations

import asyncio
import base64

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from degrade.errors import DaguerreError, ImageError

STATIC = Path(__file__).resolve().parent / "static"
FORM_FIELDS = frozenset({"file", "scratches", "anchor", "format", "model"})


@dataclass
class ServeConfig:
    model: str = "default"
    workers: int = 1  # restorations running at once
    queue: int = 8  # requests allowed to wait for a worker
    max_upload_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 40_000_000
    timeout_s: float = 300.0
    device: str = "auto"


class Gate:
    """At most ``workers`` running and ``queue`` waiting; anyone beyond is turned away (503).

    The running limit is the restoration pool's size; a request leaves the gate when its
    restoration ends, not when it times out, so timed-out work still counts until it stops."""

    def __init__(self, workers: int, queue: int) -> None:
        self.lock = threading.Lock()
        self.capacity = workers + queue
        self.inside = 0

    def enter(self) -> bool:
        with self.lock:
            if self.inside >= self.capacity:
                return False
            self.inside += 1
            return True

    def leave(self) -> None:
        with self.lock:
            self.inside -= 1


def _rss_mb() -> float:
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def create_app(cfg: ServeConfig | None = None):
    """The FastAPI application (the model is loaded once, at start-up)."""
    import torch

    from degrade.io import decode_image

    from .restore import SCRATCH_MODES, get_bundle, picture_array, resolve_device, restore

    cfg = cfg or ServeConfig()
    device = resolve_device(cfg.device)
    bundle = get_bundle(cfg.model, str(device))  # unknown model or bad weights: fail at start-up
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // max(1, cfg.workers)))
    gate = Gate(cfg.workers, cfg.queue)
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=max(1, cfg.workers), thread_name_prefix="restore")
    stats = {"served": 0, "rejected": 0, "errors": 0}
    from pipelines.layout import code_version

    app = FastAPI(title="daguerre", version=code_version(), docs_url="/docs")

    def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", []))
        return error(422, f"invalid request: {where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # last resort: never leak a traceback
        stats["errors"] += 1
        return error(500, f"internal error: {type(exc).__name__}")

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "model": cfg.model, "in_flight": gate.inside, "capacity": gate.capacity,
                "rss_mb": round(_rss_mb(), 1), **stats}  # fmt: skip

    @app.get("/v1/models")
    async def models():
        """The bundle this server restores with (the only one a request may name): it listed every bundle in
        the store, and asking for any other was a 422."""
        from .store import cards, resolve

        path = str(resolve(cfg.model, "bundle"))
        card = next((c for c in cards() if c["path"] == path), None)  # none for a bundle given as a file elsewhere
        row = {"name": cfg.model, "origin": "file", "bytes": os.path.getsize(path)} if card is None else \
            {k: card.get(k) for k in ("name", "stage", "origin", "bytes", "metrics", "saved")}  # fmt: skip
        return {"default": cfg.model, "models": [row]}

    @app.get("/")
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def read_upload(request: Request) -> tuple[bytes | None, dict[str, str], list[tuple[str, bool]]]:
        """The multipart body, streamed with a byte cap; returns the file bytes (None: no file in field 'file'),
        the form fields, and every part's name with whether it was a plain field (not a file)."""
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise ImageError("expected multipart/form-data with the image in field 'file'")
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > cfg.max_upload_bytes + 64 * 1024:
            raise OverflowError
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > cfg.max_upload_bytes + 64 * 1024:
                raise OverflowError
        from starlette.datastructures import Headers
        from starlette.formparsers import MultiPartParser

        async def replay():
            yield bytes(body)

        form = await MultiPartParser(Headers(raw=request.headers.raw), replay(), max_part_size=cfg.max_upload_bytes).parse()
        upload = form.get("file")
        data = None if upload is None or isinstance(upload, str) else await upload.read()  # None: checked after the names
        if data is not None and len(data) > cfg.max_upload_bytes:
            raise OverflowError
        return data, {k: v for k, v in form.items() if isinstance(v, str)}, [(k, isinstance(v, str)) for k, v in form.multi_items()]

    @app.post("/v1/restore")
    async def restore_endpoint(request: Request):
        if not gate.enter():  # before the body is read: a flood of uploads waits here, not in memory (read first, each
            stats["rejected"] += 1  # upload held open just short of its end kept up to --max-upload-mb, with no bound)
            return error(503, "busy: too many restorations in progress, retry shortly", {"Retry-After": "2"})
        held = [True]  # the gate's place, until a restoration job takes it over
        try:
            return await restore_request(request, held)
        finally:
            if held[0]:
                gate.leave()

    async def restore_request(request: Request, held: list[bool]):
        try:  # a client that stalls mid-body would otherwise hold its connection and its memory for ever
            data, fields, parts = await asyncio.wait_for(read_upload(request), timeout=cfg.timeout_s)
        except asyncio.TimeoutError:
            return error(408, f"the upload did not arrive within {cfg.timeout_s:.0f} s")
        except OverflowError:
            return error(413, f"upload larger than {cfg.max_upload_bytes // 2**20} MiB")
        except ImageError as e:
            return error(400, str(e))
        except Exception as e:  # noqa: BLE001  malformed multipart bodies
            return error(400, f"malformed upload ({type(e).__name__})")
        names = [k for k, _ in parts]  # file parts too: a second image under another name is not silently dropped
        unknown = sorted(set(names) - FORM_FIELDS)
        if unknown:
            return error(422, f"unknown form field(s): {', '.join(unknown)} (known: {', '.join(sorted(FORM_FIELDS))})")
        twice = sorted({k for k in names if names.count(k) > 1})
        if twice:  # which one would count? (the last did, for the image as for the options)
            return error(422, f"form field(s) given more than once: {', '.join(twice)}")
        as_files = sorted(k for k, plain in parts if not plain and k != "file")
        if as_files:  # an option sent as a file part was ignored, its default used
            return error(422, f"form field(s) {', '.join(as_files)} must be plain values, not files")
        if data is None:  # after the names: an image under another name (image=) is that unknown field, 422
            return error(400, "no file in field 'file'")
        if not data:
            return error(400, "the uploaded file is empty")
        asked = fields.get("model", request.query_params.get("model", cfg.model))
        if asked != cfg.model:
            return error(422, f"this server restores with model {cfg.model!r} only, not {asked!r} (start one with --model {asked})")
        scratches = fields.get("scratches", "auto")
        fmt = fields.get("format", "json" if "application/json" in request.headers.get("accept", "") else "png")
        if scratches not in SCRATCH_MODES:
            return error(422, f"scratches must be {', '.join(SCRATCH_MODES[:-1])} or {SCRATCH_MODES[-1]}")
        anchor = fields.get("anchor", "true")
        if anchor not in ("true", "false"):
            return error(422, "anchor must be true or false")
        if fmt not in ("png", "json"):
            return error(422, "format must be png or json")
        try:  # off the event loop: a large scan takes seconds to decode, and /healthz must still answer
            pic = await asyncio.to_thread(decode_image, data, "upload", cfg.max_pixels, deep=True)
        except ImageError as e:
            msg = str(e).replace("upload: ", "", 1)
            return error(413 if "exceeds the limit" in msg or "too many pixels" in msg else 415, msg)
        px = picture_array(pic)
        job = pool.submit(_run_restore, restore, bundle, px, scratches, str(device), anchor == "true", pic, fmt == "json")
        held[0] = False
        job.add_done_callback(lambda _: gate.leave())  # also when cancelled before it started
        try:
            png, mask_png, seconds = await asyncio.wait_for(asyncio.wrap_future(job), timeout=cfg.timeout_s)  # a queued job is cancelled
        except asyncio.TimeoutError:
            return error(504, f"restoration took longer than {cfg.timeout_s:.0f} s (waiting included)")
        except (DaguerreError, ImageError) as e:
            return error(422, str(e))
        stats["served"] += 1
        headers = {"X-Restore-Seconds": f"{seconds:.3f}"}
        if fmt == "json":
            return JSONResponse({"width": int(px.shape[1]), "height": int(px.shape[0]), "seconds": round(seconds, 3),
                                 "model": cfg.model, "image": base64.b64encode(png).decode(),
                                 "mask": base64.b64encode(mask_png).decode()}, headers=headers)  # fmt: skip
        return Response(png, media_type="image/png", headers=headers)

    app.state.config = cfg
    app.state.gate = gate
    app.state.pool = pool
    return app


def _run_restore(restore, bundle, px, scratches, device, anchor, pic, with_mask):
    """Restore and encode on a worker thread (a 40 MP PNG takes seconds to encode: not on the event
    loop); returns the PNG, the mask's PNG if asked, and the restoration's own seconds."""
    from degrade.io import encode_png

    from .restore import encode_restored

    t = time.perf_counter()
    res = restore(px, bundle, scratches, device=device, anchor=anchor)
    seconds = time.perf_counter() - t
    return encode_restored(res.image, pic.alpha is not None, pic.icc), encode_png(res.mask) if with_mask else None, seconds


def serve(host: str = "127.0.0.1", port: int = 8000, cfg: ServeConfig | None = None, on_ready=None) -> None:
    """Load the model, bind the address, then serve; ``on_ready(port)`` is told the bound port (``port`` 0:
    one the system picks) just before."""
    import socket

    import uvicorn

    app = create_app(cfg)
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, reuse_port=False)
    except OSError as e:  # socket.gaierror's errno is negative: its strerror says it
        why = str(e.strerror or e).split(" (while attempting")[0]  # create_server appends the address again
        raise DaguerreError(f"cannot listen on {host}:{port} ({why})") from None
    if on_ready:
        on_ready(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_keep_alive=5))
    server.run(sockets=[sock])


__all__ = ["ServeConfig", "create_app", "serve"]
