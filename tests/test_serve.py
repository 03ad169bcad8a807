"""daguerre serve: the HTTP API (test client), the page in headless Chromium, and a bounded load test."""

from __future__ import annotations

import base64
import io
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from degrade.io import encode_png, read_image
from degrade.samples import real_photo_paths
from test_restore import make_random_bundle

ROOT = Path(__file__).resolve().parent.parent


def png_bytes(h=48, w=64, seed=0, mode="RGB") -> bytes:
    rng = np.random.default_rng(seed)
    shape = (h, w) if mode == "L" else (h, w, {"LA": 2, "RGBA": 4}.get(mode, 3))
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture()
def client(home):
    from fastapi.testclient import TestClient

    from zoo.serve import ServeConfig, create_app

    make_random_bundle("rb")
    app = create_app(ServeConfig(model="rb", workers=1, queue=2, max_upload_bytes=200_000, max_pixels=500_000))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c, app


def test_health_models_page(client):
    c, _ = client
    assert c.get("/healthz").json()["status"] == "ok"
    models = c.get("/v1/models").json()
    assert models["default"] == "rb" and [m["name"] for m in models["models"]] == ["rb"]  # not default, rb's parts
    assert models["models"][0]["origin"] == "store" and models["models"][0]["bytes"] > 0
    page = c.get("/")
    assert page.status_code == 200 and "Drop a photo here" in page.text and "/v1/restore" in page.text


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA"])
def test_restore_png_keeps_size_and_mode(client, mode):
    c, _ = client
    r = c.post("/v1/restore", files={"file": ("x.png", png_bytes(mode=mode), "image/png")})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    im = Image.open(io.BytesIO(r.content))
    assert im.size == (64, 48)
    assert im.mode == {"RGB": "RGB", "L": "L", "RGBA": "RGBA", "LA": "LA"}[mode]
    assert float(r.headers["x-restore-seconds"]) >= 0


def test_restore_keeps_sixteen_bits(client):
    import cv2

    c, _ = client
    deep = np.random.default_rng(5).integers(0, 65536, (48, 64, 3), dtype=np.uint16)
    r = c.post("/v1/restore", files={"file": ("x.png", encode_png(deep), "image/png")})
    assert r.status_code == 200
    out = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint16 and out.shape == deep.shape


def test_restore_keeps_the_uploads_colour_profile(client):
    from PIL import ImageCms

    c, _ = client
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buf = io.BytesIO()
    Image.open(io.BytesIO(png_bytes())).save(buf, format="PNG", icc_profile=icc)
    r = c.post("/v1/restore", files={"file": ("x.png", buf.getvalue(), "image/png")})
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).info.get("icc_profile") == icc
    plain = c.post("/v1/restore", files={"file": ("x.png", png_bytes(), "image/png")})
    assert "icc_profile" not in Image.open(io.BytesIO(plain.content)).info


def test_restore_json_with_mask(client):
    c, _ = client
    r = c.post("/v1/restore", files={"file": ("x.png", png_bytes(), "image/png")}, data={"format": "json", "scratches": "none"})
    body = r.json()
    assert r.status_code == 200 and body["width"] == 64 and body["height"] == 48
    img = Image.open(io.BytesIO(base64.b64decode(body["image"])))
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["mask"]))))
    assert img.size == (64, 48) and mask.shape == (48, 64) and not mask.any()


def test_scratches_all_as_daguerre_restore_takes_it(client):
    import zoo

    c, _ = client
    data = png_bytes(seed=5)
    r = c.post("/v1/restore", files={"file": ("x.png", data, "image/png")}, data={"format": "json", "scratches": "all"})
    assert r.status_code == 200, r.text
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["mask"]))))
    want = zoo.restore(np.asarray(Image.open(io.BytesIO(data))), "rb", scratches="all").mask
    assert np.array_equal(mask, want)


def test_bad_requests_are_4xx_json_and_the_server_keeps_serving(client):
    c, _ = client
    big = np.zeros((800, 800), np.uint8)  # 640,000 pixels > 500,000, a tiny file: a decompression-bomb stand-in
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, format="PNG")
    cases = [
        ({"files": {"file": ("notes.txt", b"hello, not an image", "text/plain")}}, 415),
        ({"files": {"file": ("trunc.png", png_bytes()[:100], "image/png")}}, 415),
        ({"files": {"file": ("empty.png", b"", "image/png")}}, 400),
        ({"files": {"file": ("huge.bin", b"\x00" * 300_000, "application/octet-stream")}}, 413),
        ({"files": {"file": ("bomb.png", buf.getvalue(), "image/png")}}, 413),
        ({"files": {"other": ("x.png", png_bytes(), "image/png")}}, 422),  # an unknown field, as docs/serve.md says
        ({"data": {"file": "x.png"}}, 400),  # a file name, not a file
        ({"data": {"scratches": "auto"}}, 400),
        ({"files": {"file": ("x.png", png_bytes(), "image/png")}, "data": {"scratches": "maybe"}}, 422),
        ({"files": {"file": ("x.png", png_bytes(), "image/png")}, "data": {"anchor": "maybe"}}, 422),
        ({"files": {"file": ("x.png", png_bytes(), "image/png")}, "data": {"model": "other"}}, 422),  # not silently rb
        ({"files": {"file": ("x.png", png_bytes(), "image/png")}, "data": {"colour": "1"}}, 422),  # a typo is not ignored
        ({"content": b"garbage", "headers": {"content-type": "multipart/form-data; boundary=zzz"}}, 400),
        # file parts count too: a second image, two images under one name, an option sent as a file
        ({"files": {"file": ("x.png", png_bytes(), "image/png"), "file2": ("y.png", png_bytes(seed=1), "image/png")}}, 422),
        ({"files": [("file", ("x.png", png_bytes(), "image/png")), ("file", ("y.png", png_bytes(seed=1), "image/png"))]}, 422),
        ({"files": {"file": ("x.png", png_bytes(), "image/png")}, "data": {"scratches": ["none", "auto"]}}, 422),
        ({"files": {"file": ("x.png", png_bytes(), "image/png"), "scratches": ("s.txt", b"none", "text/plain")}}, 422),
    ]
    for kwargs, status in cases:
        r = c.post("/v1/restore", **kwargs)
        assert r.status_code == status, (kwargs.get("files"), r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/json") and "error" in r.json()
    assert c.post("/v1/restore", files={"file": ("x.png", png_bytes(), "image/png")}).status_code == 200
    assert c.get("/healthz").json()["errors"] == 0


def test_an_image_under_another_field_name_is_an_unknown_field(client):
    """``image=@scan.jpg`` answered 400 "no file in field 'file'"; docs/serve.md says any other field is a 422."""
    c, _ = client
    r = c.post("/v1/restore", files={"image": ("x.png", png_bytes(), "image/png")})
    assert r.status_code == 422 and r.json()["error"].startswith("unknown form field(s): image (known: anchor, file,"), r.text
    r = c.post("/v1/restore", files={"image": ("x.png", png_bytes(), "image/png")}, data={"format": "json"})
    assert r.status_code == 422 and "image" in r.json()["error"], r.text
    r = c.post("/v1/restore", files={"format": (None, "json")})  # no image at all: still the missing file
    assert r.status_code == 400 and r.json()["error"] == "no file in field 'file'", r.text
    r = c.post("/v1/restore", files={"file": ("x.png", b"", "image/png")})
    assert r.status_code == 400 and r.json()["error"] == "the uploaded file is empty", r.text


def test_back_pressure_503_with_retry_after(home, monkeypatch):
    from fastapi.testclient import TestClient

    import zoo.serve as serve_mod

    make_random_bundle("rb")
    release = threading.Event()
    real = serve_mod._run_restore

    def slow(*args):
        release.wait(60)
        return real(*args)

    monkeypatch.setattr(serve_mod, "_run_restore", slow)
    app = serve_mod.create_app(serve_mod.ServeConfig(model="rb", workers=1, queue=0))
    with TestClient(app, raise_server_exceptions=False) as c:
        results = []
        t = threading.Thread(target=lambda: results.append(c.post("/v1/restore", files={"file": ("a.png", png_bytes(), "image/png")})))
        t.start()
        deadline = time.monotonic() + 60  # under load the first upload can take seconds to reach the gate
        while app.state.gate.inside != 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert app.state.gate.inside == 1, "the first request never got in"
        busy = c.post("/v1/restore", files={"file": ("b.png", png_bytes(), "image/png")})
        assert busy.status_code == 503 and busy.headers["retry-after"] == "2"
        release.set()
        t.join(60)
        assert results[0].status_code == 200


@pytest.mark.parametrize("module, name, fmt", [("degrade.io", "decode_image", "png"), ("zoo.restore", "encode_restored", "json")],
                         ids=["decode", "encode"])  # fmt: skip
def test_health_answers_while_an_upload_decodes_or_its_result_encodes(home, monkeypatch, module, name, fmt):
    """Decoding and encoding run off the event loop: a scan that takes seconds to decode, or whose
    restored PNG takes seconds to encode, holds up no other request (the encode once ran on the loop)."""
    import importlib

    from fastapi.testclient import TestClient

    import zoo.serve as serve_mod

    make_random_bundle("rb")
    mod = importlib.import_module(module)
    stalled, release, resumed = threading.Event(), threading.Event(), threading.Event()
    real = getattr(mod, name)

    def slow(*args, **kwargs):
        stalled.set()
        release.wait(60)
        resumed.set()
        return real(*args, **kwargs)

    monkeypatch.setattr(mod, name, slow)
    app = serve_mod.create_app(serve_mod.ServeConfig(model="rb", workers=1, queue=1))
    with TestClient(app, raise_server_exceptions=False) as c:
        results = []
        upload = {"files": {"file": ("a.png", png_bytes(), "image/png")}, "data": {"format": fmt}}
        t = threading.Thread(target=lambda: results.append(c.post("/v1/restore", **upload)))
        t.start()
        assert stalled.wait(60)
        health = c.get("/healthz")
        # answered while the decode or encode was still stalled: on the event loop it would have waited for it
        # (a wall-clock bound on the answer failed under load without the loop being blocked)
        assert health.status_code == 200 and health.json()["in_flight"] == 1 and not resumed.is_set()
        release.set()
        t.join(60)
        assert results[0].status_code == 200 and app.state.gate.inside == 0
        if fmt == "json":
            body = results[0].json()
            assert body["image"] and body["mask"] and 0 < body["seconds"] < 10


def test_a_stalled_upload_times_out(home):
    """A body shorter than its Content-Length held the connection with no answer."""
    import asyncio

    import zoo.serve as serve_mod

    make_random_bundle("rb")
    app = serve_mod.create_app(serve_mod.ServeConfig(model="rb", workers=1, queue=1, timeout_s=0.5))
    scope = {"type": "http", "method": "POST", "path": "/v1/restore", "raw_path": b"/v1/restore", "query_string": b"",
             "headers": [(b"content-type", b"multipart/form-data; boundary=zzz"), (b"content-length", b"4000000")],
             "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1), "root_path": ""}  # fmt: skip
    sent = []

    async def receive():
        if not sent and not getattr(receive, "started", False):
            receive.started = True
            return {"type": "http.request", "body": b"--zzz\r\n", "more_body": True}
        await asyncio.sleep(3600)  # the rest never comes

    async def send(message):
        sent.append(message)

    t0 = time.perf_counter()
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 10))
    assert sent[0]["status"] == 408 and time.perf_counter() - t0 < 5


def test_uploads_still_arriving_count_against_the_capacity(home):
    """The gate was entered after the body was read: uploads held open just short of their end were each kept in
    memory (up to --max-upload-mb), as many as clients opened, and none was turned away."""
    import asyncio

    import zoo.serve as serve_mod

    make_random_bundle("rb")
    app = serve_mod.create_app(serve_mod.ServeConfig(model="rb", workers=1, queue=1, timeout_s=5))
    scope = {"type": "http", "method": "POST", "path": "/v1/restore", "raw_path": b"/v1/restore", "query_string": b"",
             "headers": [(b"content-type", b"multipart/form-data; boundary=zzz"), (b"content-length", b"4000000")],
             "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1), "root_path": ""}  # fmt: skip

    async def upload(sent: list) -> None:
        started = []

        async def receive():
            if not started:
                started.append(1)
                return {"type": "http.request", "body": b"--zzz\r\n" + b"\0" * 100_000, "more_body": True}
            await asyncio.sleep(3600)  # the rest never comes

        async def send(message):
            sent.append(message)

        await app(scope, receive, send)

    async def main():
        answers: list[list] = [[], [], []]
        stalled = [asyncio.create_task(upload(answers[i])) for i in range(2)]
        await asyncio.sleep(0.5)
        assert app.state.gate.inside == 2  # both stalled uploads hold a place
        t0 = time.perf_counter()
        await asyncio.wait_for(upload(answers[2]), 10)
        assert answers[2][0]["status"] == 503 and time.perf_counter() - t0 < 2  # at once, its body never read
        await asyncio.gather(*stalled)
        assert [a[0]["status"] for a in answers[:2]] == [408, 408] and app.state.gate.inside == 0

    asyncio.run(main())


def test_busy_port_is_one_line_error_before_serving(capsys, home):
    from cli_helpers import one_line_error, run

    make_random_bundle("rb")
    with socket.create_server(("127.0.0.1", 0)) as s:
        r = run(capsys, "serve", "--model", "rb", "--port", str(s.getsockname()[1]))
    assert one_line_error(r) and "cannot listen on 127.0.0.1" in r.err and "serving" not in r.out


@pytest.mark.parametrize("value", ["inf", "1e308", "nan", "0", "-1"])
def test_max_megapixels_out_of_range_is_one_line_error(capsys, home, value):
    from cli_helpers import one_line_error, run

    r = run(capsys, "serve", "--max-megapixels", value)
    assert r.code == 2 and one_line_error(r) and "--max-megapixels" in r.err and "internal" not in r.err, r.err


def test_workers_bound_concurrency_and_timed_out_work_keeps_its_slot(home, monkeypatch):
    from fastapi.testclient import TestClient

    import zoo.serve as serve_mod

    make_random_bundle("rb")
    release = threading.Event()
    running, peak, lock = [0], [0], threading.Lock()
    real = serve_mod._run_restore

    def counted(*args):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            release.wait(10)
            return real(*args)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(serve_mod, "_run_restore", counted)
    app = serve_mod.create_app(serve_mod.ServeConfig(model="rb", workers=1, queue=2, timeout_s=0.5))
    post = lambda c, out: out.append(c.post("/v1/restore", files={"file": ("a.png", png_bytes(), "image/png")}))  # noqa: E731
    with TestClient(app, raise_server_exceptions=False) as c:
        first: list = []
        post(c, first)  # blocked past the timeout
        assert first[0].status_code == 504
        assert running[0] == 1 and app.state.gate.inside == 1  # the work goes on, and still counts
        release.set()
        deadline = time.monotonic() + 60  # the real restoration still has to run, slowly under load
        while app.state.gate.inside != 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert app.state.gate.inside == 0 and running[0] == 0
        app.state.config.timeout_s = 30
        out: list = []
        threads = [threading.Thread(target=post, args=(c, out)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(r.status_code for r in out) == [200, 200, 200]
    assert peak[0] == 1  # --workers 1: one restoration at a time


# -- a real server --------------------------------------------------------------------------------
@pytest.fixture()
def server(home):
    make_random_bundle("rb")
    model = "default" if os.environ.get("DAGUERRE_UPDATE_DOCS") else "rb"  # the docs screenshot shows the shipped model
    env = {**os.environ, "DAGUERRE_HOME": str(home)}
    p = subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", "serve", "--model", model, "--port", "0",
                          "--workers", "1", "--queue", "4"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    import re

    import httpx

    announced = p.stdout.readline().decode()  # --port 0: the system's pick, announced before serving
    port = re.search(r"http://127\.0\.0\.1:(\d+)/", announced)
    if port is None or port.group(1) == "0":
        p.kill()
        raise RuntimeError(announced + p.stderr.read().decode())
    url = f"http://127.0.0.1:{port.group(1)}"
    for _ in range(300):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        p.kill()
        raise RuntimeError(p.stderr.read().decode())
    yield url, p
    p.terminate()
    p.wait(10)


def test_page_in_headless_chromium(server, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian packages chromium and chromium-driver; .ci/run installs them)")
    pw = pytest.importorskip("playwright.sync_api", reason="the playwright Python driver is not installed")
    url, _ = server
    photo = [p for p in real_photo_paths() if p.name == "old_w_scratch_c.png"][0]
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"]  # fmt: skip
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=args)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(url + "/")
        assert "Restore an old photo" in page.inner_text("h1")
        page.set_input_files("#file", str(photo))
        page.wait_for_selector("#compare img#after[src^='data:image/png']", timeout=60_000)
        page.wait_for_function("document.getElementById('compare').style.display !== 'none'", timeout=60_000)
        assert "Restored" in page.inner_text("#status")
        after = page.eval_on_selector("#after", "el => [el.naturalWidth, el.naturalHeight]")
        src = read_image(photo).pixels
        assert after == [src.shape[1], src.shape[0]]
        page.fill("#slider", "70")
        assert page.eval_on_selector("#after-wrap", "el => el.style.width") == "70%"
        assert page.get_attribute("#download", "href").startswith("data:image/png")
        page.screenshot(path=str(tmp_path / "serve.png"), full_page=True)
        browser.close()
    assert (tmp_path / "serve.png").stat().st_size > 10_000
    if os.environ.get("DAGUERRE_UPDATE_DOCS"):
        shutil.copy(tmp_path / "serve.png", ROOT / "docs" / "img" / "serve.png")


def test_load_on_loopback(server):
    """200 requests, 8 at a time, a quarter of them bad: only 4xx for bad ones, no 5xx but 503, all good ones answered."""
    import httpx

    url, proc = server
    good = png_bytes(64, 64, 1)
    bad = [b"not an image", good[:60], b""]
    statuses: list[tuple[bool, int]] = []
    lock = threading.Lock()

    def rss() -> float:
        return httpx.get(url + "/healthz").json()["rss_mb"]

    with httpx.Client(timeout=60) as c:  # warm up: the first requests allocate the steady-state buffers
        for _ in range(4):
            c.post(url + "/v1/restore", files={"file": ("w.png", good, "image/png")})
    before = rss()

    def worker(k: int) -> None:
        with httpx.Client(timeout=60) as c:
            for i in range(k, 200, 8):
                is_good = i % 4 != 0
                body = good if is_good else bad[i % 3]
                for _attempt in range(60):
                    r = c.post(url + "/v1/restore", files={"file": ("f.png", body, "image/png")})
                    if r.status_code != 503:
                        break
                    time.sleep(float(r.headers.get("retry-after", "1")) / 4)
                with lock:
                    statuses.append((is_good, r.status_code))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert len(statuses) == 200
    assert all(s == 200 for ok, s in statuses if ok), sorted({s for ok, s in statuses if ok})
    assert all(400 <= s < 500 for ok, s in statuses if not ok)
    health = httpx.get(url + "/healthz").json()
    assert health["errors"] == 0 and health["served"] >= 150
    assert rss() - before < 150, f"server memory grew by {rss() - before:.0f} MB over 200 requests"
    assert proc.poll() is None


def test_anchor_field_turns_the_bundles_tone_anchoring_off(home):
    from fastapi.testclient import TestClient

    from zoo import checkpoint, store
    from zoo.serve import ServeConfig, create_app

    make_random_bundle("rb")
    tensors, card = checkpoint.load(store.resolve("rb"))
    checkpoint.save(store.resolve("rb"), tensors, {**card, "anchor": {"sigma": 1.0, "tau": 32.0}})
    app = create_app(ServeConfig(model="rb", workers=1, queue=2))
    with TestClient(app, raise_server_exceptions=False) as c:
        page = c.get("/").text
        assert 'id="anchor"' in page and 'form.append("anchor"' in page
        got = {}
        for flag in ("true", "false"):
            r = c.post("/v1/restore", files={"file": ("x.png", png_bytes(seed=3), "image/png")}, data={"anchor": flag})
            assert r.status_code == 200, r.text
            got[flag] = np.asarray(Image.open(io.BytesIO(r.content))).astype(int)
    assert np.abs(got["true"] - got["false"]).mean() > 1
