"""pipelines: sources, deterministic generation, sharded zarr layout, resume after kill -9, reader."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import zarr
from PIL import Image

from cli_helpers import fails_if_it_hangs, one_line_error, run
from degrade.errors import DaguerreError
from degrade.io import encode_png
from pipelines import build_spec, create_dataset, open_dataset
from pipelines.sources import CropConfig, pick_and_crop, scan_source

FIELDS = ("clean", "degraded", "mask", "params", "source")


def _all(ds):
    return {f: ds.read_range(f, 0, len(ds)) for f in ds.fields}


def _same(a, b):
    assert a.keys() == b.keys()
    for f in a:
        if isinstance(a[f], list):
            assert a[f] == b[f], f
        else:
            assert np.array_equal(a[f], b[f]), f


@pytest.fixture()
def small_spec(home):
    return lambda **kw: build_spec(
        kw.pop("name", "t"), kw.pop("source", "builtin:samples"), kw.pop("count", 24), kw.pop("size", 64),
        kw.pop("seed", 5), kw.pop("recipe", "old-photo"), **kw,
    )  # fmt: skip


def test_layout_attributes_and_zarr_compatibility(small_spec, home):
    res = create_dataset(small_spec(count=20, shard_size=8), workers=1, scheduler="threads")
    assert res.path == home / "datasets" / "t" / "v1.zarr"
    g = zarr.open_group(str(res.path), mode="r")
    assert g["clean"].shape == (20, 64, 64, 3) and g["mask"].shape == (20, 64, 64) and g["params"].shape == (20,)
    assert g["degraded"].chunks == (1, 64, 64, 3) and g["degraded"].shards == (8, 64, 64, 3)
    codecs = g["clean"].metadata.to_dict()["codecs"][0]["configuration"]["codecs"]
    assert [c["name"] for c in codecs] == ["bytes", "zstd"]
    a = g.attrs["daguerre"]
    assert a["complete"] and a["schema"] == 1 and a["count"] == 20 and a["size"] == 64 and a["seed"] == 5
    assert len(a["recipe_hash"]) == 64 and a["recipe"]["steps"]
    assert a["source"]["fingerprint"] and a["source"]["files"][0]["sha256"]
    for lib in ("numpy", "opencv-python", "imgaug", "scikit-image", "zarr"):
        assert a["versions"][lib] != "absent"
    assert len(a["shards"]) == 3 and a["shards"][-1]["samples"] == [16, 20]
    ds = open_dataset("t")
    mine = _all(ds)
    for f in FIELDS:  # zarr-python decodes exactly what the fast writer wrote
        theirs = g[f][:]
        if f in ("params", "source"):
            assert list(theirs) == mine[f]
        else:
            assert np.array_equal(theirs, mine[f])
    s = ds[7]
    assert s["clean"].shape == (64, 64, 3) and s["mask"].dtype == np.uint8
    assert isinstance(s["params"], list) and {"file", "box", "flip"} <= set(s["source"])
    from degrade import replay

    again, mask = replay(s["clean"], s["params"])  # the stored record replays the stored pixels
    assert np.array_equal(again, s["degraded"]) and np.array_equal(mask, s["mask"])


@pytest.mark.parametrize("field,level", [("degraded", -1), ("mask", 3), ("params", -7), ("clean", -100)])
def test_hand_written_metadata_is_what_zarr_python_writes(small_spec, tmp_path, field, level):
    layout = small_spec(count=10, shard_size=4, zstd_level=level).layouts()[field]
    g = zarr.open_group(str(tmp_path / "ref.zarr"), mode="w", zarr_format=3)
    kw = dict(name=field, shape=layout.shape, chunks=(1, *layout.sample_shape), shards=(4, *layout.sample_shape),
              compressors=zarr.codecs.ZstdCodec(level=level))  # fmt: skip
    g.create_array(dtype=str, **kw) if layout.dtype == "string" else g.create_array(dtype="uint8", fill_value=0, **kw)
    theirs = json.loads((tmp_path / "ref.zarr" / field / "zarr.json").read_text())
    assert layout.metadata() == theirs


def test_shard_bytes_and_checksums_with_and_without_overlap(small_spec, tmp_path):
    from pipelines.generate import field_checksum, generate_shard, make_samples, prepare_store
    from pipelines.shards import decode_chunk, decode_index

    spec = small_spec(count=12, shard_size=8)
    samples = make_samples(spec, 8, 12)
    layouts = spec.layouts()
    blobs = []
    for overlap in (False, True):
        store = tmp_path / f"p{int(overlap)}.zarr"
        prepare_store(spec, store)
        marker = generate_shard(spec, str(store), 1, overlap)
        assert marker["samples"] == [8, 12]
        assert marker["fields"] == {f: field_checksum(samples[f]) for f in spec.fields}
        blobs.append({f: (store / f / lay.shard_key(1)).read_bytes() for f, lay in layouts.items()})
    assert blobs[0] == blobs[1]  # the encoder thread changes nothing on disk
    layout, blob = layouts["degraded"], blobs[1]["degraded"]
    index = decode_index(layout, blob[-layout.index_nbytes :])
    for j, (off, n) in enumerate(index[:4]):  # chunks land in sample order whatever order they were made in
        assert np.array_equal(decode_chunk(layout, blob[int(off) : int(off + n)]), samples["degraded"][j])
    assert (index[4:] == np.iinfo(np.uint64).max).all()  # a short shard's unused slots: the sharding spec's "empty chunk"


def test_benchmark_serial_share_covers_a_short_last_shard(small_spec, tmp_path):
    """bench/generate_throughput.py's (d): fewer shards than asked for, the last one short, still timed per sample."""
    import bench_scripts

    bench = bench_scripts.load("generate_throughput")
    spec = small_spec(count=10, shard_size=4)
    make_ms, write_ms = bench.serial_share(spec, tmp_path / "s.zarr", shards=8)
    assert make_ms > 0 and write_ms > 0  # (their ratio is timing, not tested)
    assert sorted(p.name for p in (tmp_path / "s.zarr" / ".progress").glob("*.json")) == [f"shard-{k:06d}.json" for k in range(3)]


def test_every_setting_that_shapes_the_data_is_in_its_lineage(small_spec, home):
    """A version is reused when its lineage hash matches: each setting that changes the samples must change it."""
    base = small_spec(count=4)
    variants = [dataclasses.replace(base, **kw) for kw in (
        {"seed": 6}, {"count": 5}, {"size": 48}, {"shard_size": 2}, {"recipe_hash": "0" * 64},
        {"crop": CropConfig(flip=False)}, {"crop": CropConfig(min_fraction=0.5)})]  # fmt: skip
    hashes = [s.lineage_hash for s in (base, *variants)]
    assert len(set(hashes)) == len(hashes)
    assert dataclasses.replace(base, name="other", zstd_level=3).lineage_hash == base.lineage_hash  # same samples
    create_dataset(base, workers=1, scheduler="threads")
    res = create_dataset(small_spec(count=4, crop=CropConfig(flip=False)), workers=1, scheduler="threads")
    assert not res.reused and res.path.name == "v2.zarr"


def test_result_is_independent_of_workers_scheduler_and_shard_size(small_spec, tmp_path):
    stores = []
    for i, (workers, scheduler, shard) in enumerate([(1, "threads", 64), (2, "threads", 5), (2, "processes", 7)]):
        spec = small_spec(count=23, shard_size=shard)
        stores.append(create_dataset(spec, store=str(tmp_path / f"s{i}.zarr"), workers=workers, scheduler=scheduler).path)
    ref = _all(open_dataset(stores[0]))
    for s in stores[1:]:
        _same(ref, _all(open_dataset(s)))


def test_seed_changes_samples(small_spec, tmp_path):
    a = create_dataset(small_spec(count=4, seed=1), store=str(tmp_path / "a.zarr"), workers=1, scheduler="threads")
    b = create_dataset(small_spec(count=4, seed=2), store=str(tmp_path / "b.zarr"), workers=1, scheduler="threads")
    assert not np.array_equal(open_dataset(a.path).read("degraded", 0), open_dataset(b.path).read("degraded", 0))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != "zarr.json"}


def test_ctrl_c_with_worker_processes_is_one_line(tmp_path):
    """A terminal sends Ctrl-C to the whole process group: the workers must stay quiet, the parent say one line."""
    args = ["dataset", "create", "q", "--source", "builtin:samples", "--count", "400", "--size", "128",
            "--shard-size", "4", "--workers", "2", "--scheduler", "processes"]  # fmt: skip
    env = {**os.environ, "DAGUERRE_HOME": str(tmp_path / "h")}
    p = subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", *args], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.monotonic() + 120  # the workers' start takes a while on a loaded machine
    started = False
    while time.monotonic() < deadline and p.poll() is None:
        if len(list((tmp_path / "h" / "datasets" / "q").glob(".partial-*/.progress/shard-*.json"))) >= 2:
            started = True
            break
        time.sleep(0.02)
    assert started and p.poll() is None, "generation ended, or wrote no shard, before it could be interrupted"
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "Traceback" not in err.decode(), err.decode()[-2000:]


def test_sigterm_with_worker_processes_is_one_line_and_the_command_resumes(tmp_path):
    """``kill PID`` (a service manager stopping the job) ended a create with the default action: no word, and the
    resource tracker's warning about leaked semaphores. It stops like Ctrl-C, says so, and the same command resumes."""
    args = ["dataset", "create", "q", "--source", "builtin:samples", "--count", "400", "--size", "128",
            "--shard-size", "4", "--workers", "2", "--scheduler", "processes"]  # fmt: skip
    env = {**os.environ, "DAGUERRE_HOME": str(tmp_path / "h")}
    p = subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", *args], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and p.poll() is None:
        if len(list((tmp_path / "h" / "datasets" / "q").glob(".partial-*/.progress/shard-*.json"))) >= 2:
            break
        time.sleep(0.02)
    assert p.poll() is None, "generation ended before it could be stopped"
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143 and err.decode().strip() == "terminated", (p.returncode, err.decode()[-2000:])
    r = subprocess.run([sys.executable, "-c", "import cli; cli.main()", *args], env=env, capture_output=True, timeout=300)
    assert r.returncode == 0 and b"shards resumed" in r.stdout, r.stderr.decode()[-2000:]


def _sigint_disposition():
    return signal.getsignal(signal.SIGINT)


def test_worker_processes_ignore_ctrl_c_and_the_parent_does_not():
    from pipelines.generate import _quiet_pool

    before = signal.getsignal(signal.SIGINT)
    pool = _quiet_pool(2)
    try:
        assert {pool.submit(_sigint_disposition).result(timeout=60) for _ in range(4)} == {signal.SIG_IGN}
    finally:
        pool.shutdown()
    assert signal.getsignal(signal.SIGINT) == before


def test_resume_after_kill_9_is_byte_identical(tmp_path):
    args = ["dataset", "create", "k", "--source", "builtin:samples", "--count", "200", "--size", "256",
            "--shard-size", "4", "--seed", "9", "--recipe", "severe", "--workers", "1", "--scheduler", "threads"]  # fmt: skip
    env = {**os.environ, "DAGUERRE_HOME": str(tmp_path / "h1")}
    cmd = [sys.executable, "-c", "import cli; cli.main()", *args]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    progress = None
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        found = list((tmp_path / "h1" / "datasets" / "k").glob(".partial-*/.progress/shard-*.json"))
        if len(found) >= 3:
            progress = found
            break
        time.sleep(0.02)
    assert progress is not None and p.poll() is None, "generation ended before it could be killed"
    p.send_signal(signal.SIGKILL)
    p.wait()
    # not visible to readers while incomplete
    env_home = tmp_path / "h1"
    r = subprocess.run([sys.executable, "-c", "import cli; cli.main()", "dataset", "export", "k", "--out", str(tmp_path / "x")],
                       env=env, capture_output=True, text=True)  # fmt: skip
    assert r.returncode != 0 and "unknown dataset 'k'" in r.stderr
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "shards resumed" in done.stdout
    env2 = {**os.environ, "DAGUERRE_HOME": str(tmp_path / "h2")}
    clean_run = subprocess.run(cmd, env=env2, capture_output=True, text=True, timeout=300)
    assert clean_run.returncode == 0, clean_run.stderr
    a = _files(env_home / "datasets" / "k" / "v1.zarr")
    b = _files(tmp_path / "h2" / "datasets" / "k" / "v1.zarr")
    assert a.keys() == b.keys() and len(a) == 5 * 50
    assert all(a[k] == b[k] for k in a), "resumed shards differ from an uninterrupted run"
    assert not list((env_home / "datasets" / "k").glob(".partial-*"))


def test_sources_skip_bad_files_and_convert_modes(home, tmp_path, photo):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "good.png").write_bytes(encode_png(photo))
    (src / "sub" / "gray.png").write_bytes(encode_png(photo[..., 0]))
    Image.fromarray(np.dstack([photo, np.full(photo.shape[:2], 0, np.uint8)])).save(src / "clear.png")  # fully transparent
    cv2.imwrite(str(src / "deep.tif"), (photo.astype(np.uint16) * 257)[..., ::-1])
    (src / "tiny.jpg").write_bytes(encode_png(cv2.resize(photo, (12, 9))))
    data = (src / "good.png").read_bytes()
    (src / "broken.png").write_bytes(data[: len(data) // 2])
    (src / "notes.jpg").write_text("not an image")
    source = scan_source(str(src))
    assert sorted(f.name for f in source.files) == ["clear.png", "deep.tif", "good.png", "sub/gray.png", "tiny.jpg"]
    assert sorted(Path(s["path"]).name for s in source.skipped) == ["broken.png", "notes.jpg"]
    with pytest.raises(DaguerreError, match="--strict"):
        scan_source(str(src), strict=True)
    tiles = {}
    for i in range(40):
        t, rec = pick_and_crop(source, 3, i, 32, CropConfig())
        assert t.shape == (32, 32, 3) and t.dtype == np.uint8
        tiles.setdefault(rec["file"], t)
    assert (tiles["clear.png"] == 255).all()  # transparent pixels composited on white
    g = tiles["sub/gray.png"]
    assert np.array_equal(g[..., 0], g[..., 1])
    assert tiles["tiny.jpg"].std() > 5  # enlarged, not padded with a flat border
    res = create_dataset(build_spec("mixed", str(src), 30, 32, 1), workers=1, scheduler="threads")
    attrs = open_dataset(res.path).attrs
    assert len(attrs["source"]["skipped"]) == 2


def test_a_source_file_named_in_another_encoding_is_used(home, capsys, tmp_path, photo):
    """A file whose name is not UTF-8 (Latin-1 ``\xe9t\xe9.png`` from an old archive) failed the
    fingerprint with an internal UnicodeEncodeError; it is a source image like any other."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(encode_png(photo))
    with open(os.fsencode(src) + b"/\xe9t\xe9.png", "wb") as f:
        f.write(encode_png(photo[::-1]))
    source = scan_source(str(src))
    assert len(source.files) == 2 and not source.skipped
    args = ["--count", "4", "--size", "32", "--workers", "1", "--scheduler", "threads"]
    r = run(capsys, "dataset", "create", "latin", "--source", str(src), *args)
    assert r.code == 0, r.err
    r = run(capsys, "dataset", "reproduce", "latin")
    assert r.code == 0 and "identical" in r.out, r.out + r.err


def test_glob_source(home, tmp_path, photo):
    for i in range(3):
        (tmp_path / f"p{i}.png").write_bytes(encode_png(np.roll(photo, i * 10, axis=1)))
    (tmp_path / "skip.txt").write_text("x")
    source = scan_source(str(tmp_path / "p*.png"))
    assert [f.name for f in source.files] == ["p0.png", "p1.png", "p2.png"]


def test_a_broken_link_in_a_source_is_reported_not_ignored(tmp_path, photo):
    """A source folder's or glob's broken symbolic link (``p1.png`` whose photo was moved away) was left out
    without a word: not in ``source.skipped``, not counted in the lineage, and ``--strict`` passed."""
    (tmp_path / "p0.png").write_bytes(encode_png(photo))
    (tmp_path / "p1.png").symlink_to(tmp_path / "moved-away.png")
    for spec in (tmp_path, str(tmp_path / "*.png")):
        source = scan_source(spec)
        assert [f.name for f in source.files] == ["p0.png"]
        assert [s["reason"] for s in source.skipped] == [f"{tmp_path / 'p1.png'}: a broken symbolic link"]
        with pytest.raises(DaguerreError, match="1 unreadable source image"):
            scan_source(spec, strict=True)


def test_a_glob_source_reports_the_folders_it_cannot_list(tmp_path, photo, monkeypatch):
    """``glob`` skips a folder it may not list without a word: a folder source reported ``photos/locked``, while
    ``photos/**/*.png`` and ``photos/*/*.png`` left its photos out silently (the second said only 'holds no images')."""
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "in.png").write_bytes(encode_png(photo))
    (tmp_path / "ok.png").write_bytes(encode_png(photo))
    scandir = os.scandir

    def refuse(path="."):  # the test suite runs as root too, which chmod 000 does not stop
        if os.path.basename(os.fspath(path).rstrip("/")) == "locked":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse)
    told = f"{tmp_path / 'locked'}: cannot list this folder (Permission denied)"
    for spec in (tmp_path, tmp_path / "**" / "*.png"):
        source = scan_source(str(spec))
        assert [f.name for f in source.files] == ["ok.png"] and [s["reason"] for s in source.skipped] == [told]
        with pytest.raises(DaguerreError, match="1 unreadable source image"):
            scan_source(str(spec), strict=True)
    with pytest.raises(DaguerreError, match="holds no images.*1 folder.*cannot list this folder"):
        scan_source(str(tmp_path / "*" / "*.png"))


def test_a_fifo_or_device_in_a_source_is_reported_not_ignored(tmp_path, photo):
    """A FIFO, a socket or a link to a device among a source folder's or glob's images was left out without a word
    (not in ``source.skipped``; ``--strict`` passed); it is reported unreadable, never opened."""
    import socket

    (tmp_path / "p0.png").write_bytes(encode_png(photo))
    os.mkfifo(tmp_path / "p1.png")
    (tmp_path / "p3.png").symlink_to("/dev/zero")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(tmp_path / "p2.png"))
    try:
        for spec in (tmp_path, str(tmp_path / "*.png")):
            source = scan_source(spec)
            assert [f.name for f in source.files] == ["p0.png"]
            assert [x["reason"] for x in source.skipped] == [
                f"{tmp_path / f'p{i}.png'}: not a regular file (a pipe, socket or device), not an image" for i in (1, 2, 3)]
            with pytest.raises(DaguerreError, match="3 unreadable source image"):
                scan_source(spec, strict=True)
    finally:
        s.close()


def test_a_fifo_device_or_broken_link_given_as_the_source_is_named_as_what_it_is(tmp_path):
    """`--source scan.png` that is a FIFO, /dev/zero or a link whose photo moved away was an 'unknown source: not a
    folder, file or glob', as if nothing were there."""
    os.mkfifo(tmp_path / "fifo.png")
    (tmp_path / "moved.png").symlink_to(tmp_path / "away.png")
    for spec, why in ((tmp_path / "fifo.png", "is not a regular file (a pipe, socket or device)"),
                      ("/dev/zero", "is not a regular file (a pipe, socket or device)"), (tmp_path / "moved.png", "is a broken symbolic link")):
        with pytest.raises(DaguerreError) as e:
            scan_source(str(spec))
        assert str(e.value) == f"source {str(spec)!r} {why}"


def test_crop_is_deterministic_and_varied(home):
    source = scan_source("builtin:samples")
    a = [pick_and_crop(source, 1, i, 48, CropConfig())[1] for i in range(30)]
    b = [pick_and_crop(source, 1, i, 48, CropConfig())[1] for i in reversed(range(30))][::-1]
    assert a == b
    assert len({r["file"] for r in a}) > 5 and len({r["box"][2] for r in a}) > 10
    assert {r["flip"] for r in a} == {True, False}


def test_empty_and_unknown_sources(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DaguerreError, match="holds no images"):
        scan_source(str(tmp_path / "empty"))
    with pytest.raises(DaguerreError, match="unknown source"):
        scan_source("nowhere/at/all")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_text("x")
    with pytest.raises(DaguerreError, match="none of its 1 images could be read"):
        scan_source(str(tmp_path / "bad"))


def test_a_source_given_as_a_path_is_that_folder_and_other_types_are_one_error(tmp_path):
    """``build_spec(..., source=Path(...))`` failed inside scan_source: 'PosixPath' object has no attribute 'strip'."""
    from degrade.samples import real_photo_paths

    folder = real_photo_paths()[0].parent
    assert scan_source(folder).fingerprint == scan_source(str(folder)).fingerprint
    for bad in (["builtin:samples"], None, b"builtin:real"):
        with pytest.raises(DaguerreError, match="--source must be text or a path"):
            scan_source(bad)


@pytest.mark.parametrize("bad", [{"seed": 1.7}, {"count": 8.5}, {"size": "32"}, {"seed": "x"}, {"shard_size": 8.0}, {"seed": True}])
def test_counts_sizes_and_seeds_must_be_whole_numbers(small_spec, bad):
    """From Python, seed 1.7 silently became the dataset of seed 1 (and count 8.5 one of 8), while
    ``size="32"`` and ``seed="x"`` failed inside with a TypeError or ValueError."""
    option = "--" + next(iter(bad)).replace("_", "-")
    with pytest.raises(DaguerreError, match=f"{option} must be a whole number"):
        small_spec(**bad)
    assert small_spec(seed=np.int64(3), count=np.int32(8)).lineage()["seed"] == 3


def test_real_photo_dataset(home):
    res = create_dataset(build_spec("r", "builtin:real", 10, 64, 0, real=True), workers=1, scheduler="threads")
    ds = open_dataset("r")
    assert ds.fields == ["degraded", "source"] and ds.attrs["kind"] == "real" and ds.attrs["recipe"] is None
    assert ds[3]["degraded"].shape == (64, 64, 3) and "clean" not in ds[3]
    assert res.path.name == "v1.zarr"


def test_dataset_source_redegrades_clean_tiles(small_spec, home):
    create_dataset(small_spec(name="base", count=6), workers=1, scheduler="threads")
    res = create_dataset(build_spec("again", "dataset:base@v1", 6, 64, 2, "bopbtl"), workers=1, scheduler="threads")
    base, again = open_dataset("base"), open_dataset(res.path)
    base_tiles = [base.read("clean", i) for i in range(6)]
    for i in range(6):
        clean = again.read("clean", i)
        src = json.loads(again.read("source", i))
        tile = base_tiles[src["index"]]
        assert np.array_equal(clean, tile[:, ::-1] if src["flip"] else tile)


def test_versions_and_references(small_spec, home):
    create_dataset(small_spec(count=3), workers=1, scheduler="threads")
    create_dataset(small_spec(count=3, seed=8), workers=1, scheduler="threads")
    assert open_dataset("t").path.name == "v2.zarr"
    assert open_dataset("t@v1").path.name == "v1.zarr"
    assert open_dataset(str(home / "datasets" / "t" / "v1.zarr")).attrs["seed"] == 5
    with pytest.raises(DaguerreError, match="has no version v9"):
        open_dataset("t@v9")
    with pytest.raises(DaguerreError, match="unknown dataset"):
        open_dataset("nope")
    with pytest.raises(DaguerreError, match="no dataset at"):
        open_dataset("/no/such/store.zarr")
    with pytest.raises(DaguerreError, match="invalid dataset name"):
        open_dataset("bad name!")


def test_reader_pickles_and_reads_in_other_processes(small_spec, home):
    res = create_dataset(small_spec(count=12, shard_size=5), workers=1, scheduler="threads")
    ds = open_dataset(res.path)
    clone = pickle.loads(pickle.dumps(ds))
    assert len(pickle.dumps(ds)) < 500  # the path, not the data or file handles
    assert np.array_equal(clone.read("degraded", 11), ds.read("degraded", 11))
    idx = [11, 0, 5, 6, 3]
    many = ds.read_many("degraded", idx)
    assert all(np.array_equal(many[j], ds.read("degraded", i)) for j, i in enumerate(idx))
    for order in ([4, 2, 3, 0], [9, 7, 9, 5], [1, 10, 0, 11, 2]):  # within a shard out of order, repeated, shards interleaved
        got = ds.read_many("clean", order)
        assert all(np.array_equal(got[j], ds.read("clean", i)) for j, i in enumerate(order)), order
    assert np.array_equal(ds.read_range("mask", 3, 9), np.stack([ds.read("mask", i) for i in range(3, 9)]))
    n = len(ds)  # a negative start counts from the end, as read's index does (it was clamped to 0)
    assert np.array_equal(ds.read_range("mask", -3, n), np.stack([ds.read("mask", i) for i in (-3, -2, -1)]))
    assert ds.read_range("mask", 5, 2).shape[0] == 0
    with pytest.raises(TypeError, match="sample ranges are integers"):
        ds.read_range("mask", 0.5, 3)
    with pytest.raises(IndexError):
        ds.read("clean", 12)
    with pytest.raises(IndexError, match="sample -13 out of range for 12 samples"):
        ds.read("clean", -13)
    with pytest.raises(TypeError, match="sample indices are integers"):
        ds.read("clean", 1.7)
    out = np.zeros((2, *many.shape[1:]), np.uint8)
    assert ds.read_many("degraded", [11, 0], out=out) is out and np.array_equal(out, many[:2])
    for bad in (np.zeros_like(out, order="F"), out[..., ::-1], out.astype(np.float32), np.zeros((3, *out.shape[1:]), np.uint8)):
        with pytest.raises(DaguerreError, match="out must be a writeable, C-contiguous uint8 array"):
            ds.read_many("degraded", [11, 0], out=bad)
    frozen = np.zeros_like(out)
    frozen.flags.writeable = False
    with pytest.raises(DaguerreError, match="writeable"):
        ds.read_many("degraded", [11, 0], out=frozen)
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(1) as pool:
        remote = pool.apply(_read_sum, (ds, 7))
    assert remote == int(ds.read("clean", 7).sum())


def _read_sum(ds, i):
    return int(ds.read("clean", i).sum())


def test_incomplete_and_corrupt_stores_are_refused(small_spec, home, tmp_path):
    res = create_dataset(small_spec(count=6, shard_size=3), store=str(tmp_path / "c.zarr"), workers=1, scheduler="threads")
    meta = json.loads((res.path / "zarr.json").read_text())
    meta["attributes"]["daguerre"]["complete"] = False
    (tmp_path / "inc.zarr").mkdir()
    (tmp_path / "inc.zarr" / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(DaguerreError, match="incomplete"):
        open_dataset(tmp_path / "inc.zarr")
    shard = res.path / "degraded" / "c" / "1" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF  # flip a bit in the shard index
    shard.write_bytes(bytes(data))
    with pytest.raises(DaguerreError, match="crc32c mismatch"):
        open_dataset(res.path).read("degraded", 4)
    shard.unlink()
    with pytest.raises(DaguerreError, match="shard 1 of degraded is missing"):
        open_dataset(res.path).read("degraded", 4)


def test_cli_create_reusing_a_version_reports_no_shard_resumed(capsys, home):
    """The same create run twice: the second reuses the version, made by the first, and resumed nothing; its --json
    said every shard was resumed."""
    args = ["dataset", "create", "t2", "--source", "builtin:samples", "--count", "8", "--size", "48", "--shard-size", "4",
            "--scheduler", "threads", "--workers", "1"]  # fmt: skip
    made = json.loads(run(capsys, *args, "--json").out)
    assert made["reused"] is False and made["shards"] == 2 and made["shards_resumed"] == 0
    again = json.loads(run(capsys, *args, "--json").out)
    assert again["reused"] is True and again["ref"] == made["ref"] and again["shards"] == 2 and again["shards_resumed"] == 0
    r = run(capsys, *args)
    assert r.code == 0 and r.out == f"t2@v1 already has this lineage (same recipe, source, seed, count, size, shard size, crop); reusing it: {made['path']}\n"


def test_cli_create_export_and_errors(capsys, home, tmp_path):
    r = run(capsys, "dataset", "create", "c", "--source", "builtin:samples", "--count", "10", "--size", "48", "--shard-size", "4",
            "--scheduler", "threads")  # fmt: skip
    assert r.code == 0 and "created c@v1 (10 samples, 48 px, 3 shards)" in r.out
    r = run(capsys, "dataset", "export", "c", "--out", tmp_path / "png")
    assert r.code == 0
    names = sorted(p.name for p in (tmp_path / "png").iterdir() if p.name != ".daguerre-export.json")
    assert len(names) == 40 and names[:4] == ["000000.clean.png", "000000.degraded.png", "000000.json", "000000.mask.png"]
    meta = json.loads((tmp_path / "png" / "000003.json").read_text())
    assert meta["params"] is not None and meta["source"]["file"]
    # --json: what a script needs, with nothing else on stdout
    again = ["dataset", "create", "c", "--source", "builtin:samples", "--count", "10", "--size", "48", "--shard-size", "4", "--json"]
    r = run(capsys, *again, "--scheduler", "threads")
    made = json.loads(r.out)
    assert made["ref"] == "c@v1" and made["reused"] is True and made["shards"] == 3 and len(made["identity"]) >= 16
    r = run(capsys, "dataset", "export", "c", "--out", tmp_path / "png", "--json")
    assert json.loads(r.out) == {"dataset": made["path"], "out": str(tmp_path / "png"), "written": 0, "already_there": 10}
    bad = [
        (["--source", "builtin:samples", "--count", "5", "--recipe", "nope"], "unknown recipe 'nope'"),
        (["--source", "nowhere", "--count", "5"], "unknown source 'nowhere'"),
        (["--source", "builtin:samples", "--count", "0"], "'--count' / '-n': 0 is not in the range x>=1"),
        (["--source", "builtin:samples", "--count", "5", "--size", "4"], "'--size': 4 is not in the range 8<=x<=4096"),
        (["--source", "builtin:samples", "--count", "5", "--shard-size", "0"], "'--shard-size': 0 is not in the range x>=1"),
        (["--source", "builtin:samples", "--count", "5", "--zstd-level", "23"], "'--zstd-level': 23 is not in the range -131072<=x<=22"),
        (["--source", "dataset:missing", "--count", "5"], "unknown dataset 'missing'"),
        (["--source", "builtin:samples", "--count", "5", "--seed", "-1"], "'--seed' / '-s': -1 is not in the range x>=0"),
        (["--source", "builtin:real", "--count", "5", "--real", "--recipe", "bopbtl"], "--recipe does not apply to --real"),
        (["--source", "builtin:samples", "--count", "5", "--address", "notaurl"], "expected tcp://HOST:PORT"),
    ]
    for args, msg in bad:
        r = run(capsys, "dataset", "create", "e", *args)
        usage = "range" in msg or "--recipe" in msg  # an option's value or options that exclude each other: exit 2
        assert one_line_error(r) and msg in r.err and r.code == (2 if usage else 1), (args, r.err)
    r = run(capsys, "dataset", "create", "e.zarr", "--source", "builtin:samples", "--count", "5")
    assert one_line_error(r) and "would read as a store path" in r.err
    assert not (home / "datasets" / "e.zarr").exists()  # refused before anything was written
    r = run(capsys, "dataset", "export", "missing", "--out", tmp_path / "y")
    assert one_line_error(r) and "unknown dataset 'missing'" in r.err


def test_distributed_scheduler_address(small_spec, tmp_path):
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        res = create_dataset(small_spec(count=9, shard_size=4), store=str(tmp_path / "d.zarr"), address=cluster.scheduler_address)
    local = create_dataset(small_spec(count=9, shard_size=4), store=str(tmp_path / "l.zarr"), workers=1, scheduler="threads")
    _same(_all(open_dataset(res.path)), _all(open_dataset(local.path)))
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(DaguerreError, match="cannot reach the dask scheduler"):
            create_dataset(small_spec(count=2), store=str(tmp_path / "x.zarr"), address="tcp://127.0.0.1:9")


def test_a_scheduler_without_workers_is_one_line_not_a_hang(small_spec, tmp_path, monkeypatch):
    """It took the tasks and waited for ever, without a word."""
    import time

    from distributed import LocalCluster

    import pipelines.generate as generate_module

    monkeypatch.setattr(generate_module, "WORKERS_TIMEOUT_S", 2)
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
        t = time.monotonic()
        with pytest.raises(DaguerreError, match=r"no dask worker joined the scheduler at .* within 2 s"):
            create_dataset(small_spec(count=2), store=str(tmp_path / "w.zarr"), address=cluster.scheduler_address)
        assert time.monotonic() - t < 30


@pytest.mark.parametrize("peer", ["silent", "http"])
def test_an_address_that_is_not_a_scheduler_fails_in_bounded_time(small_spec, tmp_path, monkeypatch, peer):
    """A peer that accepts and never answers hung the create; an HTTP server's reply was read as a
    message length (MemoryError)."""
    import socket

    import pipelines.generate as gen

    monkeypatch.setattr(gen, "CONNECT_TIMEOUT_S", 2)
    server = socket.create_server(("127.0.0.1", 0))
    conns = []

    def answer():
        while True:
            try:
                c, _ = server.accept()
            except OSError:
                return
            conns.append(c)
            if peer == "http":
                c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" * 8)

    threading.Thread(target=answer, daemon=True).start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(DaguerreError, match="dask scheduler"):
            create_dataset(small_spec(count=2), store=str(tmp_path / "x.zarr"), address=f"tcp://127.0.0.1:{server.getsockname()[1]}")
    finally:
        server.close()
        for c in conns:
            c.close()
    assert time.perf_counter() - t0 < 20


def _dead(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # a zombie: dead, not yet reaped
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_busy_workers_die_with_a_killed_parent(tmp_path):
    """kill -9 of `dataset create` left its worker processes generating on their own for minutes."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import os, sys, time\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})\n"
        "from pipelines.generate import _quiet_pool\n"
        "if __name__ == '__main__':\n"
        "    pool = _quiet_pool(2)\n"
        "    for _ in range(2): pool.submit(time.sleep, 60)\n"
        "    print(' '.join(str(p) for p in pool._processes), flush=True)\n"
        "    time.sleep(60)\n"
    )
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    workers = [int(w) for w in p.stdout.readline().split()]
    assert len(workers) == 2 and not any(_dead(w) for w in workers)
    p.kill()
    p.wait(10)
    deadline = time.time() + 10
    while time.time() < deadline and not all(_dead(w) for w in workers):
        time.sleep(0.1)
    alive = [w for w in workers if not _dead(w)]
    for w in alive:
        os.kill(w, signal.SIGKILL)
    assert not alive


def test_ctrl_c_while_workers_start_is_not_lost(monkeypatch):
    """SIGINT is ignored while the workers spawn (so they inherit that), but the parent's is held, not dropped."""
    import concurrent.futures

    from pipelines.generate import _quiet_pool

    real = concurrent.futures.wait

    def interrupted_wait(fs, *a, **kw):
        # the user's Ctrl-C, in the middle of the start-up, to this (main) thread
        assert signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, set())  # held, not ignored
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        return real(fs, *a, **kw)

    monkeypatch.setattr(concurrent.futures, "wait", interrupted_wait)
    # as in a terminal: a test run started in the background (`make test &`) inherits SIGINT ignored,
    # and Python then installs no handler (this test failed there, never in the foreground)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            _quiet_pool(1)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_finalized_store_interrupted_before_its_rename_is_not_regenerated(small_spec, tmp_path):
    from pipelines.generate import generate

    spec = small_spec(count=8, shard_size=4)
    partial, final = tmp_path / ".d.partial", tmp_path / "d.zarr"

    def crash(done: Path) -> Path:
        raise KeyboardInterrupt  # after the checksums were recorded and the markers removed

    with pytest.raises(KeyboardInterrupt):
        generate(spec, partial, crash, workers=1, scheduler="threads")
    res = generate(spec, partial, lambda done: done.rename(final) or final, workers=1, scheduler="threads")
    assert res.shards_written == 0 and res.shards_reused == 2
    assert open_dataset(str(final)).attrs["complete"] and len(open_dataset(str(final))) == 8


def test_a_store_killed_right_after_its_checksums_were_recorded_is_published_clean(small_spec, tmp_path, monkeypatch):
    """Killed between recording the checksums and removing the progress markers, the re-run published the
    store with its `.progress` folder and the killed writers' temporaries: not the files an uninterrupted run makes."""
    import shutil

    from pipelines.generate import generate

    spec = small_spec(count=8, shard_size=4)
    partial, final = tmp_path / ".d.partial", tmp_path / "d.zarr"
    real = shutil.rmtree

    def killed(p, *a, **k):
        if Path(p).name == ".progress":
            (partial / "clean" / "c" / ".abcd1234.tmp").write_bytes(b"a write cut short")
            raise KeyboardInterrupt
        return real(p, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(shutil, "rmtree", killed)
        with pytest.raises(KeyboardInterrupt):
            generate(spec, partial, lambda done: done.rename(final) or final, workers=1, scheduler="threads")
    generate(spec, partial, lambda done: done.rename(final) or final, workers=1, scheduler="threads")
    clean = tmp_path / "clean.zarr"
    generate(spec, tmp_path / ".clean.partial", lambda done: done.rename(clean) or clean, workers=1, scheduler="threads")
    assert _files(final) == _files(clean)


def test_resuming_with_another_zstd_level_is_refused(small_spec, tmp_path):
    from pipelines.generate import generate, prepare_store

    spec = small_spec(count=8, shard_size=4)
    partial = tmp_path / ".d.partial"
    prepare_store(spec, partial)  # an interrupted run at the default level
    other = dataclasses.replace(spec, zstd_level=19)
    with pytest.raises(DaguerreError, match="uses --zstd-level -1; resume with that level"):
        generate(other, partial, lambda d: d, workers=1, scheduler="threads")


def test_threads_reading_one_dataset_get_the_right_bytes(small_spec, tmp_path):
    """Past 256 open shard files the reader closed every handle, under other threads' reads: they failed
    (EBADF) or read another shard's bytes through a reused descriptor."""
    from concurrent.futures import ThreadPoolExecutor

    res = create_dataset(small_spec(count=60, size=16, shard_size=1), store=str(tmp_path / "d.zarr"), workers=1, scheduler="threads")
    ds = open_dataset(res.path)
    want = [ds[i] for i in range(60)]
    ds.close()

    def same(i: int) -> bool:
        got = ds[i % 60]
        return all(np.array_equal(got[f], want[i % 60][f]) if isinstance(got[f], np.ndarray) else got[f] == want[i % 60][f]
                   for f in ds.fields)  # fmt: skip

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(same, range(0, 60 * 15, 7)))
    ds.close()


def test_a_failed_shard_shuts_the_worker_pool_down_in_order(home, tmp_path, monkeypatch):
    """After a shard failed (here its source image vanished; in the field, a full disk), the pool was shut down
    with wait=False, which races the pool's own threads at exit: about one run in ten printed Python's
    "Exception ignored … OSError: Bad file descriptor" traceback under the one-line error."""
    import pipelines.generate as gen

    src = tmp_path / "src"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), np.full((80, 90, 3), 128, np.uint8))
    spec = build_spec("f", str(src), 4, 32, 0, shard_size=2)
    (src / "a.png").unlink()  # gone after the scan: every shard fails in its worker
    calls, make_pool = [], gen._quiet_pool

    def recording_pool(workers):
        pool = make_pool(workers)
        shutdown = pool.shutdown
        pool.shutdown = lambda wait=True, cancel_futures=False: (calls.append(wait), shutdown(wait=wait, cancel_futures=cancel_futures))
        return pool

    monkeypatch.setattr(gen, "_quiet_pool", recording_pool)
    with pytest.raises(Exception, match="a.png"):
        create_dataset(spec, workers=1, scheduler="processes")
    assert calls == [True]


@pytest.mark.parametrize("lost", ["closed", "cancelled"])
def test_a_scheduler_lost_mid_run_is_one_line(capsys, home, monkeypatch, lost):
    """A scheduler killed mid-run printed distributed's reconnect traceback, then an 'internal' error."""
    from concurrent.futures import CancelledError

    import distributed
    from distributed.comm.core import CommClosedError

    import pipelines.generate as gen

    class Gone:  # what a client sees once the scheduler died
        def __init__(self, *a, **k):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def wait_for_workers(self, n, timeout=None):
            pass

        def compute(self, tasks):
            if lost == "closed":
                raise CommClosedError("in <TCP (closed) ConnectionPool.gather>: ConnectionResetError: [Errno 104] Connection reset by peer")
            raise CancelledError("shard-3 cancelled for reason: scheduler-connection-lost.")

    monkeypatch.setattr(distributed, "Client", Gone)
    monkeypatch.setattr(gen, "_probe_scheduler", lambda address: None)
    r = run(capsys, "dataset", "create", "d", "--source", "builtin:samples", "--count", "4", "--size", "32", "--address", "tcp://127.0.0.1:8786")
    assert one_line_error(r) and "lost the dask scheduler at tcp://127.0.0.1:8786" in r.err and "re-run" in r.err and "internal" not in r.err, r.err


def test_a_source_file_changed_after_the_scan_is_refused_not_mixed_in(home, tmp_path):
    """The lineage records each file's SHA-256 at the scan; generation decoded whatever the path held later
    (an edit during a long run, or a worker seeing another copy), so the data silently disagreed with it."""
    src = tmp_path / "src"
    src.mkdir()
    for k in range(2):
        cv2.imwrite(str(src / f"{k}.png"), np.full((80, 90, 3), 60 + 100 * k, np.uint8))
    spec = build_spec("ch", str(src), 6, 32, 0, shard_size=3)
    cv2.imwrite(str(src / "tmp.png"), np.full((80, 90, 3), 255, np.uint8))
    os.replace(src / "tmp.png", src / "1.png")  # replaced after the scan, before generation reads it
    with pytest.raises(DaguerreError, match=r"1\.png changed since the source was scanned"):
        create_dataset(spec, workers=1, scheduler="threads")
    res = create_dataset(build_spec("ch", str(src), 6, 32, 0, shard_size=3), workers=1, scheduler="threads")  # rescanned
    assert res.version.ref == "ch@v1"


def test_resume_remakes_shards_whose_data_a_power_cut_lost(small_spec, tmp_path):
    """A marker counted as a finished shard even when its data never reached the disk (a power cut
    before writeback leaves empty files, or an empty marker): the run published a store that failed
    verify. Now a shard counts only with a readable marker and every file at its recorded size."""
    from pipelines.generate import PROGRESS_DIR, generate, generate_shard, prepare_store

    spec = small_spec(count=12, shard_size=4)
    clean = generate(spec, tmp_path / ".ref.partial", lambda d: d.rename(tmp_path / "ref.zarr") or tmp_path / "ref.zarr",
                     workers=1, scheduler="threads")  # fmt: skip
    partial = tmp_path / ".p.partial"
    assert prepare_store(spec, partial) == [0, 1, 2]
    for k in range(3):
        generate_shard(spec, str(partial), k)
    assert prepare_store(spec, partial) == []
    layouts = spec.layouts()
    (partial / "degraded" / layouts["degraded"].shard_key(0)).write_bytes(b"")  # data lost, marker kept
    (partial / "mask" / layouts["mask"].shard_key(1)).write_bytes(b"\0" * 10)  # truncated
    (partial / PROGRESS_DIR / "shard-000002.json").write_bytes(b"")  # the marker itself lost
    assert prepare_store(spec, partial) == [0, 1, 2]
    final = tmp_path / "p.zarr"
    res = generate(spec, partial, lambda d: d.rename(final) or final, workers=1, scheduler="threads")
    assert res.shards_written == 3
    _same(_all(open_dataset(str(final))), _all(open_dataset(str(clean.path))))
    assert all((final / f / layouts[f].shard_key(k)).read_bytes() == (clean.path / f / layouts[f].shard_key(k)).read_bytes()
               for f in spec.fields for k in range(3))  # fmt: skip


def test_resume_remakes_a_shard_whose_marker_is_a_fifo(small_spec, tmp_path):
    """An unfinished store's progress marker replaced by a FIFO: resuming waited for a writer for ever. It is
    not a readable marker (never opened): its shard is made again and a marker written in its place."""
    from pipelines.generate import PROGRESS_DIR, generate, generate_shard, prepare_store

    spec = small_spec(count=8, shard_size=4)
    partial, final = tmp_path / ".p.partial", tmp_path / "p.zarr"
    prepare_store(spec, partial)
    for k in range(2):
        generate_shard(spec, str(partial), k)
    (partial / PROGRESS_DIR / "shard-000001.json").unlink()
    os.mkfifo(partial / PROGRESS_DIR / "shard-000001.json")
    with fails_if_it_hangs(60):
        assert prepare_store(spec, partial) == [1]
        res = generate(spec, partial, lambda d: d.rename(final) or final, workers=1, scheduler="threads")
    assert res.shards_written == 1 and res.shards_reused == 1 and open_dataset(str(final)).attrs["complete"]


def test_export_png_takes_its_folder_as_text(small_spec, home, tmp_path):
    """``export_png(ds, "folder")`` failed with 'str' object has no attribute 'exists'."""
    from pipelines import export_png

    res = create_dataset(small_spec(count=4, shard_size=4), workers=1, scheduler="threads")
    assert export_png(open_dataset(str(res.path)), str(tmp_path / "png")) == (4, 0)
    assert (tmp_path / "png" / "000003.degraded.png").exists()


def test_read_many_of_an_unknown_field_is_one_error_even_with_no_indices(small_spec, home):
    res = create_dataset(small_spec(count=4, shard_size=4), workers=1, scheduler="threads")
    ds = open_dataset(str(res.path))
    for idx in ([], [0]):
        with pytest.raises(DaguerreError, match="no field 'nope'"):
            ds.read_many("nope", idx)
    assert ds.read_many("clean", []).shape == (0, 64, 64, 3)


def test_data_reaches_the_disk_before_what_records_it(small_spec, home, monkeypatch):
    """Without fsync, a power cut could keep a progress marker, a ``complete`` flag or a catalog row
    whose data the disk never received. Each shard file's bytes are synced before it takes its name
    and the marker is written (a lost name is caught on resume by ``_shard_done``); the final
    attributes and the move into place are synced before the catalog records the version."""
    events = []
    real_fsync, real_replace, real_rename = os.fsync, os.replace, os.rename

    def fsync(fd):
        events.append(("sync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def rename(real):
        return lambda a, b: (events.append(("name", str(a), str(b))), real(a, b))[1]

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", rename(real_replace))
    monkeypatch.setattr(os, "rename", rename(real_rename))
    layouts = (spec := small_spec(count=8, shard_size=4)).layouts()
    v = create_dataset(spec, workers=1, scheduler="threads").version
    names = [i for i, e in enumerate(events) if e[0] == "name"]

    def synced_before(i, path):
        return ("sync", path) in events[:i]

    for k in range(2):
        marker = next(i for i in names if events[i][2].endswith(f"shard-{k:06d}.json"))
        for f, layout in layouts.items():
            i = next(i for i in names if events[i][2].endswith(f"/{f}/{layout.shard_key(k)}"))
            assert i < marker and synced_before(i, events[i][1]), (f, k)
    complete = [i for i in names if events[i][2].endswith(".partial-" + spec.lineage_hash[:16] + ".zarr/zarr.json")][-2]
    assert synced_before(complete, events[complete][1])
    moved = next(i for i in names if events[i][2] == v.path)
    assert ("sync", str(Path(v.path).parent)) in events[moved:]


@pytest.mark.parametrize("damage", [b"", b"\0" * 64, b"[1, 2]", b"[" * 100_000 + b"]" * 100_000])  # the last: an internal RecursionError
def test_an_unfinished_store_with_unreadable_attributes_says_so(small_spec, tmp_path, damage):
    """It was refused as "an unfinished generation with different settings", which sent the user
    looking for a setting they had not changed."""
    from pipelines.generate import prepare_store

    spec = small_spec(count=8, shard_size=4)
    partial = tmp_path / ".p.partial"
    prepare_store(spec, partial)
    (partial / "zarr.json").write_bytes(damage)
    with pytest.raises(DaguerreError, match=r"has unreadable attributes \(\w+Error.*\); remove it to start over") as e:
        prepare_store(spec, partial)
    assert "different settings" not in str(e.value) and str(partial) in str(e.value)


def test_a_dataset_closes_its_files_at_the_end_of_a_with_block(small_spec, home):
    """``Dataset`` had ``close()`` but no context manager: ``with open_dataset(...)`` failed."""
    res = create_dataset(small_spec(count=8, shard_size=4), workers=1, scheduler="threads")
    before = len(os.listdir("/proc/self/fd"))
    with open_dataset(str(res.path)) as ds:
        first = ds[0]["degraded"]
        ds[5]
        assert len(os.listdir("/proc/self/fd")) > before  # shard files held open between reads
    assert len(os.listdir("/proc/self/fd")) == before
    assert np.array_equal(ds[0]["degraded"], first)  # reading again reopens them
    ds.close()


def test_a_reader_thread_that_ends_closes_its_files(small_spec, home):
    """Each thread reads through its own file handles; they stayed open after the thread ended, so a dataset
    read from short-lived threads (a thread pool's replacements, a server's) kept one fd per shard per thread."""
    import threading

    res = create_dataset(small_spec(count=16, shard_size=2), workers=1, scheduler="threads")
    ds = open_dataset(str(res.path))
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        t = threading.Thread(target=lambda: [ds[i] for i in range(len(ds))])
        t.start()
        t.join()
    assert len(os.listdir("/proc/self/fd")) - before < 60  # one thread's worth (8 shards × 5 fields), not 20
    ds.close()
    assert len(os.listdir("/proc/self/fd")) <= before


def test_a_tls_address_without_certificates_says_what_is_missing(small_spec, tmp_path):
    """It said "does not answer as a dask scheduler (TypeError)": distributed wants an ssl_context."""
    with pytest.raises(DaguerreError, match=r"tls:// needs certificates in dask's configuration"):
        create_dataset(small_spec(count=2), store=str(tmp_path / "t.zarr"), address="tls://127.0.0.1:9")
    assert not (tmp_path / "t.zarr").exists()


def test_shard_file_names_reach_the_disk_before_the_version_is_marked_complete(small_spec, home, monkeypatch):
    """Shard files' names are not synced while generating (a name a power cut lost is made again on resume),
    but once the attributes say ``complete`` and the catalog records the version nothing regenerates them:
    every folder holding a shard file, and each folder above it, is synced before ``complete`` is written."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("sync", os.readlink(f"/proc/self/fd/{fd}"))), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("name", str(b))), real_replace(a, b))[1])
    spec = small_spec(count=8, shard_size=4)
    v = create_dataset(spec, workers=1, scheduler="threads").version
    partial = Path(v.path).parent / f".partial-{spec.lineage_hash[:16]}.zarr"
    complete = [i for i, e in enumerate(events) if e == ("name", str(partial / "zarr.json"))][-2]
    synced = {p for kind, p in events[:complete] if kind == "sync"}
    for f, layout in spec.layouts().items():
        for k in range(spec.n_shards):
            d = (partial / f / layout.shard_key(k)).parent
            while d != partial:
                assert str(d) in synced, (f, k, d)
                d = d.parent


def test_local_workers_are_capped_at_the_cores(small_spec, monkeypatch):
    """--workers 1000 started one process per shard (157 for 10,000 samples) on a 2-core machine."""
    from pipelines import generate

    asked = []
    real_pool = generate._quiet_pool
    monkeypatch.setattr(generate, "_quiet_pool", lambda w: asked.append(w) or real_pool(w))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    create_dataset(small_spec(count=40, shard_size=4), workers=1000, scheduler="processes")
    assert asked == [2]
