"""Dataset versioning: catalog, immutable versions, tags, diff, verify, reproduce, rm, gc, concurrency."""

from __future__ import annotations

import json
from datetime import datetime, timezone
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import one_line_error, run
from degrade.errors import DaguerreError
from pipelines import build_spec, create_dataset, open_dataset
from pipelines.catalog import Catalog, collect_garbage, creation_lock

ARGS = ["--source", "builtin:samples", "--size", "48", "--shard-size", "4", "--scheduler", "threads", "--workers", "1"]


def make(capsys, name, *extra, count=10):
    r = run(capsys, "dataset", "create", name, "--count", str(count), *ARGS, *extra)
    assert r.code == 0, r.err
    return r


def test_versions_tags_and_references(capsys, home):
    make(capsys, "a", "--seed", "1")
    r = make(capsys, "a", "--seed", "2")
    assert "created a@v2" in r.out
    r = make(capsys, "a", "--seed", "1")  # same lineage as v1: reused, not regenerated
    assert "a@v1 already has this lineage" in r.out
    r = run(capsys, "dataset", "tag", "a@v1", "paper-2026", "--json")
    assert r.code == 0 and json.loads(r.out)["version"]["version"] == "v1"
    assert open_dataset("a@paper-2026").attrs["seed"] == 1
    assert open_dataset("a").attrs["seed"] == 2  # NAME alone: newest
    r = run(capsys, "dataset", "ls", "--json")
    rows = json.loads(r.out)
    assert [(x["name"], x["version"], x["tags"]) for x in rows] == [("a", "v1", ["paper-2026"]), ("a", "v2", [])]
    assert rows[0]["count"] == 10 and rows[0]["bytes"] > 0 and rows[0]["recipe_name"] == "old-photo"
    r = run(capsys, "dataset", "ls")
    assert "paper-2026" in r.out and "v2" in r.out
    r = run(capsys, "dataset", "tag", "a@v2", "paper-2026")
    assert one_line_error(r) and "already points at v1" in r.err
    assert run(capsys, "dataset", "untag", "a@paper-2026").code == 0
    r = run(capsys, "dataset", "untag", "a@paper-2026")
    assert one_line_error(r) and "has no tag" in r.err


@pytest.mark.parametrize(
    "ref, message",
    [("a@v99", "has no version v99"), ("a@nosuchtag", "has no version or tag 'nosuchtag'"), ("zzz", "unknown dataset 'zzz'"),
     ("bad name", "invalid dataset name"), ("a@", "nothing after '@'"), ("/no/such.zarr", "no dataset at")],
)  # fmt: skip
def test_bad_references_are_one_line_errors(capsys, home, ref, message):
    make(capsys, "a")
    for cmd in (["info", ref], ["verify", ref], ["show", ref, "--out", str(home / "x.png")]):
        r = run(capsys, "dataset", *cmd)
        assert one_line_error(r) and message in r.err, (cmd, r.err)


def test_info_shows_lineage_recipe_versions_checksums(capsys, home, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    from degrade.samples import sample_photo_paths

    for p in sample_photo_paths()[:3]:
        (src / p.name).write_bytes(p.read_bytes())
    (src / "broken.jpg").write_text("nope")
    (src / "tab\tesc\x1b[2J.jpg").write_text("nope")  # a name that could split the line or clear the terminal
    r = run(capsys, "dataset", "create", "i", "--count", "6", "--source", str(src), "--size", "32", "--scheduler", "threads")
    assert r.code == 0 and "warning: skipped" in r.err and "broken.jpg" in r.err
    assert "tab\\tesc\\x1b[2J.jpg" in r.err and "\t" not in r.err and "\x1b" not in r.err and r.err.count("warning: skipped") == 2
    r = run(capsys, "dataset", "info", "i")
    for needle in ("identity:", "lineage:", "recipe_hash", "opencv-python", "imgaug", "zarr", "checksums:", "skipped:", "broken.jpg", "steps:"):
        assert needle in r.out, needle
    assert "tab\\tesc\\x1b[2J.jpg" in r.out and "\t" not in r.out and "\x1b" not in r.out  # as dataset create's warning
    code = next(line for line in r.out.splitlines() if line.startswith("code:"))
    assert code.count("daguerre") == 1, code  # it was named twice: "daguerre 0.1.0; python 3.11.7, daguerre 0.1.0, …"
    d = json.loads(run(capsys, "dataset", "info", "i@v1", "--json").out)
    assert d["checksums"]["shards"] == 1 and len(d["identity"]) == 64 and d["source"]["files"] == 3


def test_diff_reports_recipe_settings_and_parameter_distributions(capsys, home, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("steps:\n  - op: jpeg\n    quality: [20, 40]\n  - op: gaussian_noise\n    p: 0.5\n")
    recipe2 = tmp_path / "r2.yaml"
    recipe2.write_text("steps:\n  - op: jpeg\n    quality: [70, 90]\n  - op: dust\n")
    make(capsys, "d", "--recipe", str(recipe), count=40)
    make(capsys, "d", "--recipe", str(recipe2), "--seed", "3", count=20)
    d = json.loads(run(capsys, "dataset", "diff", "d@v1", "d@v2", "--json").out)
    assert d["settings"]["seed"] == [0, 3] and d["settings"]["count"] == [40, 20]
    assert any("steps[0].quality (jpeg): [20, 40] -> [70, 90]" in line for line in d["recipe"])
    assert any(line.startswith("~ steps[1]: gaussian_noise -> dust") for line in d["recipe"])
    q1, q2 = d["params"]["jpeg.quality"]
    assert q1["applied"] == 1.0 and 20 <= q1["p10"] <= q1["p90"] <= 40 and 70 <= q2["p10"] <= q2["p90"] <= 90
    noise = d["params"]["gaussian_noise.sigma"]
    assert 0.25 < noise[0]["applied"] < 0.75 and noise[1] is None
    r = run(capsys, "dataset", "diff", "d@v1", "d@v2")
    assert r.code == 0 and "jpeg.quality" in r.out and "steps[0].quality" in r.out
    assert "* where A and B differ" in r.out and " *jpeg.quality" in r.out  # the mark is explained where it is used


def test_verify_detects_a_flipped_bit_and_names_the_shard(capsys, home):
    make(capsys, "v", count=12)
    assert run(capsys, "dataset", "verify", "v").code == 0
    path = Path(open_dataset("v").path)
    shard = path / "degraded" / "c" / "1" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0x01  # inside a compressed chunk
    shard.write_bytes(bytes(data))
    r = run(capsys, "dataset", "verify", "v")
    assert one_line_error(r)
    assert "shard 1 (samples 4-7): degraded" in r.err + r.out
    r = run(capsys, "dataset", "verify", "--all")
    assert r.code != 0


def test_verify_says_missing_not_corrupt_for_data_that_is_gone_and_names_the_version(capsys, home):
    """A catalog entry whose folder was moved away read "v: CORRUPT (0 shards)": damaged data, and
    the name as typed rather than the version checked."""
    make(capsys, "gone", count=8)
    path = Path(open_dataset("gone").path)
    path.rename(path.parent / "elsewhere.zarr")
    r = run(capsys, "dataset", "verify", "gone")
    assert r.code != 0 and "gone@v1: MISSING (0 shards)" in r.out and "CORRUPT" not in r.out
    assert f"no dataset at {path}" in r.err
    r = run(capsys, "dataset", "verify", "--all", "--json")
    assert r.code != 0 and json.loads(r.out)[0]["missing"] is True
    (path.parent / "elsewhere.zarr").rename(path)
    (path / "zarr.json").write_text("{")  # there, but damaged: corrupt
    r = run(capsys, "dataset", "verify", "gone")
    assert r.code != 0 and "gone@v1: CORRUPT" in r.out


def test_verify_names_the_shard_whose_recorded_checksum_is_wrong(capsys, home):
    from pipelines.versioning import verify

    make(capsys, "w", count=12)  # three shards of 4
    path = Path(open_dataset("w").path)
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["daguerre"]["shards"][2]["sha256"] = "0" * 64
    (path / "zarr.json").write_text(json.dumps(meta))
    problems = verify(str(path)).problems
    assert "shard 2 (samples 8-11): shard checksum mismatch" in problems, problems


def test_diff_names_the_source_files_added_removed_and_changed(capsys, home, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(src / name)
    create = ["dataset", "create", "s", "--count", "4", "--source", str(src), "--size", "32", "--scheduler", "threads", "--workers", "1"]
    assert run(capsys, *create).code == 0
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(src / "b.png")  # changed
    (src / "c.png").unlink()  # removed
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(src / "d.png")  # added
    assert run(capsys, *create).code == 0
    d = json.loads(run(capsys, "dataset", "diff", "s@v1", "s@v2", "--json").out)["source"]
    assert (d["only_in_a"], d["only_in_b"], d["changed"]) == (["c.png"], ["d.png"], ["b.png"])


def test_diff_names_a_change_in_the_skipped_source_files(capsys, home, tmp_path):
    # the same images, one unreadable file more: the lineage (and identity) differ, and diff said nothing of why
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(src / "a.png")
    create = ["dataset", "create", "k", "--count", "2", "--source", str(src), "--size", "16", "--scheduler", "threads", "--workers", "1"]
    assert run(capsys, *create).code == 0
    (src / "broken.png").write_text("nope")
    assert run(capsys, *create).code == 0
    d = json.loads(run(capsys, "dataset", "diff", "k@v1", "k@v2", "--json").out)
    assert not d["identical"] and d["source"]["skipped"] == [0, 1]
    assert "unreadable files skipped 0 -> 1" in run(capsys, "dataset", "diff", "k@v1", "k@v2").out


def test_reproduce_untouched_version_is_identical(capsys, home):
    make(capsys, "p", count=9)
    r = run(capsys, "dataset", "reproduce", "p", "--scheduler", "threads", "--workers", "1")
    assert r.code == 0 and "identical" in r.out
    # the progress of verify and reproduce: a total of samples, then samples per shard (the bar was
    # started at 1 and advanced by whole shards)
    from pipelines.versioning import reproduce, verify

    for fn in (verify, lambda ref, **kw: reproduce(ref, 1, "threads", **kw)):
        totals, steps = [], []
        assert fn("p", on_start=lambda t, d: totals.append((t, d)), on_shard=steps.append)
        assert totals == [(9, 0)] and sum(steps) == 9 and len(steps) == 3, (totals, steps)


def test_reproduce_reports_changed_source(capsys, home, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(src / f"{i}.png")
    assert run(capsys, "dataset", "create", "s", "--count", "4", "--source", str(src), "--size", "32", "--scheduler", "threads").code == 0
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(src / "1.png")
    r = run(capsys, "dataset", "reproduce", "s", "--scheduler", "threads")
    assert one_line_error(r) and "changed since generation (1 modified: 1.png)" in r.err
    (src / "0.png").rename(src / "2.png")  # each kind named, file by file as the docs say
    r = run(capsys, "dataset", "reproduce", "s", "--scheduler", "threads")
    assert one_line_error(r) and "(1 added: 2.png; 1 removed: 0.png; 1 modified: 1.png)" in r.err, r.err


def test_show_writes_a_contact_sheet(capsys, home, tmp_path):
    make(capsys, "w", count=8)
    r = run(capsys, "dataset", "show", "w", "--out", tmp_path / "sheet.png", "--n", "4")
    assert r.code == 0
    im = Image.open(tmp_path / "sheet.png")
    assert im.size[0] > 600 and im.size[1] > 200
    assert run(capsys, "dataset", "show", "w", "--out", tmp_path / "sheet.jpg", "--n", "4").code == 0
    assert Image.open(tmp_path / "sheet.jpg").format == "JPEG"  # the suffix decides the format
    r = run(capsys, "dataset", "show", "w", "--out", tmp_path / "sheet.gif", "--n", "4")
    assert one_line_error(r) and ".png, .jpg or .webp" in r.err and not (tmp_path / "sheet.gif").exists()


def test_a_sheet_too_tall_for_its_format_is_one_line(tmp_path):
    """`dataset show -n 200 --out s.webp` makes a sheet about 23,000 px tall, beyond WebP's 16,383: it ended with
    'internal ValueError: encoding error 5' (and JPEG past 65,500 with an OSError without a reason)."""
    from PIL import Image

    from degrade.errors import DaguerreError
    from degrade.sheet import save_sheet

    for suffix, side in ((".webp", 16_384), (".jpg", 65_501)):
        out = tmp_path / f"s{suffix}"
        with pytest.raises(DaguerreError, match=rf"s\{suffix}: a \w+ image holds at most [\d,]+ pixels a side, this sheet is 8×{side}; "
                                                "write it as .png or show fewer samples"):  # fmt: skip
            save_sheet(Image.new("RGB", (8, side)), out)
        assert not out.exists()
        save_sheet(Image.new("RGB", (8, side - 1)), out)
        assert Image.open(out).size == (8, side - 1)
    save_sheet(Image.new("RGB", (8, 65_501)), tmp_path / "s.png")


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_show_replaces_its_own_sheet_but_not_a_users_file(capsys, home, tmp_path, suffix, photo):
    """``dataset show --out mine.jpg`` replaced a user's photo without a word; daguerre's sheets are marked
    (PNG text chunk, JPEG comment, WebP XMP), so a re-run still replaces its own."""
    from degrade.io import marked_by_daguerre

    make(capsys, "w", count=4)
    out = tmp_path / f"sheet{suffix}"
    for _ in range(2):  # the second run replaces the first's sheet
        r = run(capsys, "dataset", "show", "w", "--out", out, "-n", "2")
        assert r.code == 0, r.err
        assert marked_by_daguerre(out) and Image.open(out).format == {".png": "PNG", ".jpg": "JPEG", ".webp": "WEBP"}[suffix]
    mine = tmp_path / f"mine{suffix}"
    Image.fromarray(photo).save(mine)
    before = mine.read_bytes()
    assert not marked_by_daguerre(mine)
    r = run(capsys, "dataset", "show", "w", "--out", mine, "-n", "2")
    assert one_line_error(r) and "was not written by daguerre" in r.err and mine.read_bytes() == before
    r = run(capsys, "degrade", "builtin:real", "--out", tmp_path / "o", "--recipe", "mild", "--sheet", mine)
    assert one_line_error(r) and "was not written by daguerre" in r.err and mine.read_bytes() == before
    assert not (tmp_path / "o").exists()
    assert run(capsys, "dataset", "show", "w", "--out", mine, "-n", "2", "--overwrite").code == 0
    assert marked_by_daguerre(mine) and mine.read_bytes() != before
    folder = tmp_path / f"folder{suffix}"  # --overwrite cannot help there: refused before any work
    folder.mkdir()
    for args in (["dataset", "show", "w", "-n", "2", "--out"], ["degrade", "builtin:real", "-o", tmp_path / "o", "--overwrite", "--sheet"]):
        r = run(capsys, *args, folder, "--overwrite")
        assert one_line_error(r) and "is a directory" in r.err and not (tmp_path / "o").exists()
    from degrade.errors import DaguerreError
    from degrade.sheet import check_sheet_path

    with pytest.raises(DaguerreError, match=f"folder{suffix} is a folder; name a file for the sheet"):
        check_sheet_path(folder)  # the library, which click's check does not guard
    from degrade.sheet import save_sheet

    Image.fromarray(photo).save(mine)  # the library replaces what it is told to (docs/generate.py, publish, reports):
    save_sheet(Image.new("RGB", (8, 8)), mine)  # their images written before sheets were marked stopped them
    assert marked_by_daguerre(mine) and Image.open(mine).size == (8, 8)


def test_rm_refuses_tagged_without_force(capsys, home):
    make(capsys, "m", "--seed", "1")
    make(capsys, "m", "--seed", "2")
    run(capsys, "dataset", "tag", "m@v1", "keep")
    r = run(capsys, "dataset", "rm", "m@v1")
    assert one_line_error(r) and "is tagged (keep)" in r.err
    p = Path(open_dataset("m@v1").path)
    assert run(capsys, "dataset", "rm", "m@v1", "--force").code == 0
    assert not p.exists()
    r = run(capsys, "dataset", "info", "m@v1")
    assert one_line_error(r)
    assert open_dataset("m").attrs["seed"] == 2
    r = run(capsys, "dataset", "rm", "m")
    assert one_line_error(r) and "name the version" in r.err


def test_rm_refuses_a_version_others_were_made_from_without_force(capsys, home, tmp_path):
    make(capsys, "m", count=4)
    store = open_dataset("m@v1").path
    tiles = ["--count", "2", "--size", "16", "--scheduler", "threads", "--workers", "1"]
    assert run(capsys, "dataset", "create", "by-ref", "--source", "dataset:m", *tiles).code == 0  # recorded as m@v1
    assert run(capsys, "dataset", "create", "by-path", "--source", f"dataset:{store}", *tiles).code == 0
    r = run(capsys, "dataset", "rm", "m@v1")
    assert one_line_error(r) and "is the source of by-path@v1, by-ref@v1" in r.err
    make(capsys, "junk", count=4)
    _attrs_path("junk").write_text("[" * 100_000 + "]" * 100_000)  # a store too damaged to read: not a dependant, no crash
    r = run(capsys, "dataset", "rm", "by-ref@v1")
    assert r.code == 0 and "still recorded" not in r.out  # nothing was made from these
    r = run(capsys, "dataset", "rm", "m@v1", "--force")  # says what it leaves without a source, as `zoo rm --force` does
    assert r.code == 0 and not Path(store).exists()
    assert r.out.startswith("removed m@v1 (") and r.out.endswith("; still recorded as made from it: by-path@v1\n")
    r = run(capsys, "dataset", "reproduce", "by-path", "--scheduler", "threads")  # which source is gone, not just 'no dataset at'
    assert one_line_error(r) and f"the source dataset:{store}: no dataset at" in r.err


def test_crash_between_data_and_registration_leaves_nothing_visible(capsys, home, monkeypatch):
    spec = build_spec("c", "builtin:samples", 6, 32, 0, shard_size=3)

    def crash(self, *a, **k):
        raise KeyboardInterrupt("power cut")

    with monkeypatch.context() as m:
        m.setattr(Catalog, "register", crash)
        with pytest.raises(KeyboardInterrupt):
            create_dataset(spec, workers=1, scheduler="threads")
    with pytest.raises(DaguerreError, match="unknown dataset 'c'"):
        open_dataset("c")
    assert json.loads(run(capsys, "dataset", "ls", "--json").out) == []
    r = run(capsys, "dataset", "gc", "--dry-run")
    assert "would remove" in r.out and ".partial-" in r.out
    r = run(capsys, "dataset", "gc", "--json")
    assert r.code == 0 and [Path(x["path"]).name[:9] for x in json.loads(r.out)["items"]] == [".partial-", "c"]
    assert not (home / "datasets" / "c").exists()  # the folder too, once it holds nothing but its lock


def crash_before_commit(monkeypatch, spec, **kw) -> None:
    """Run create_dataset with the process dying after the data is renamed into place, before COMMIT."""
    import contextlib

    real = Catalog.transaction

    @contextlib.contextmanager
    def failing_commit(self):
        with real(self) as db:
            yield db
            raise KeyboardInterrupt("crash before COMMIT")

    with monkeypatch.context() as m:
        m.setattr(Catalog, "transaction", failing_commit)
        with pytest.raises(KeyboardInterrupt):
            create_dataset(spec, workers=1, scheduler="threads", **kw)


def test_crash_after_rename_before_commit_is_adopted_or_collected(capsys, home, monkeypatch):
    spec = build_spec("o", "builtin:samples", 6, 32, 0, shard_size=3)
    crash_before_commit(monkeypatch, spec)
    assert (home / "datasets" / "o" / "v1.zarr").exists()  # data renamed into place…
    with pytest.raises(DaguerreError, match="unknown dataset"):
        open_dataset("o")  # …but not registered, so invisible
    kept = []
    assert collect_garbage(Catalog(), dry_run=True, kept=kept) == [] and [p.name for p in kept] == ["v1.zarr"]
    assert [p.name for p, _ in collect_garbage(Catalog(), dry_run=True, force=True)] == ["v1.zarr", "o"]  # and its emptied folder
    res = create_dataset(spec, workers=1, scheduler="threads")  # the same command adopts it
    assert res.reused and res.version.ref == "o@v1" and res.shards_written == 0
    assert collect_garbage(Catalog(), dry_run=True) == []


def test_same_name_concurrent_create_fails_clearly(home):
    spec = build_spec("x", "builtin:samples", 3, 32, 0)
    with creation_lock("x"):
        with pytest.raises(DaguerreError, match="being created by another process"):
            create_dataset(spec, workers=1, scheduler="threads")
    assert create_dataset(spec, workers=1, scheduler="threads").version.ref == "x@v1"
    # a lock held for an instant (gc's probe, `is_locked`) does not fail a create that starts then
    t, held = _hold_creation_lock("x", threading.Event(), seconds=0.3)
    assert held.wait(5)
    with creation_lock("x"):
        pass
    t.join()


def test_two_names_into_one_store_at_once_fail_clearly(home, tmp_path):
    """Different names, the same --store: the second creator used to fail late, with a misleading message."""
    from pipelines.catalog import store_lock

    store = tmp_path / "shared.zarr"
    with store_lock(store):
        with pytest.raises(DaguerreError, match="shared.zarr is being generated by another process"):
            create_dataset(build_spec("y", "builtin:samples", 3, 32, 0), store=str(store), workers=1, scheduler="threads")
    assert not list(tmp_path.glob(".shared.zarr*"))  # refused before it wrote anything
    assert create_dataset(build_spec("y", "builtin:samples", 3, 32, 0), store=str(store), workers=1, scheduler="threads").path == store


def test_an_empty_source_is_refused(capsys, home):
    r = run(capsys, "dataset", "create", "e", "--count", "2", "--source", "", "--size", "32")
    assert one_line_error(r) and "--source is empty" in r.err


def test_concurrent_creates_in_separate_processes(home, tmp_path):
    env = {**os.environ, "DAGUERRE_HOME": str(home)}

    def start(name, seed):
        cmd = [sys.executable, "-c", "import cli; cli.main()", "dataset", "create", name, "--count", "60", "--size", "64",
               "--shard-size", "4", "--seed", str(seed), "--source", "builtin:samples", "--scheduler", "threads", "--workers", "1"]  # fmt: skip
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    procs = [start("one", 1), start("two", 2), start("two", 3)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    assert codes[0] == 0, outs[0]
    # same name at once: one creates v1, the other either finished after it (v2) or was told clearly
    two = [(c, o) for c, o in zip(codes[1:], outs[1:])]
    assert any(c == 0 for c, _ in two)
    for c, (out, err) in two:
        assert c == 0 or ("being created by another process" in err and "Traceback" not in err)
    cat = Catalog()
    names = [(v.name, v.version) for v in cat.versions()]
    assert ("one", "v1") in names and ("two", "v1") in names
    for v in cat.versions():
        from pipelines.versioning import verify

        assert verify(v.ref).ok


def test_catalog_survives_external_store(capsys, home, tmp_path):
    r = run(capsys, "dataset", "create", "e", "--count", "5", *ARGS, "--store", tmp_path / "ext.zarr")
    assert r.code == 0 and "e@v1" in r.out
    assert Path(open_dataset("e@v1").path) == (tmp_path / "ext.zarr").absolute()
    r = run(capsys, "dataset", "create", "e2", "--count", "5", *ARGS, "--store", tmp_path / "ext.zarr")
    assert one_line_error(r) and "already exists" in r.err


def test_store_paths_the_catalog_manages_are_refused(capsys, home, tmp_path):
    """A --store under datasets/ (gc took a running create's files there, and a store at NAME/v1.zarr
    blocked NAME forever) or inside / around a registered store (rm of one deleted the other)."""
    make(capsys, "host", count=5)
    host = open_dataset("host").path
    for store, why in [(home / "datasets" / "g-store.zarr", "which the catalog manages"),
                       (home / "datasets" / "x" / "v1.zarr", "which the catalog manages"),
                       (tmp_path / "ext.zarr" / "inner.zarr", None), (host / "inner.zarr", "which the catalog manages")]:  # fmt: skip
        if why is None:  # inside an external registered store
            make(capsys, "ext", "--store", tmp_path / "ext.zarr", count=5)
            why = "is inside the registered dataset store"
        r = run(capsys, "dataset", "create", "g", "--count", "5", *ARGS, "--store", store)
        assert one_line_error(r) and why in r.err, (store, r.err)
        assert not store.exists()
    r = run(capsys, "dataset", "create", "g", "--count", "5", *ARGS, "--store", tmp_path)
    assert one_line_error(r) and "would hold the registered dataset store" in r.err
    (home / "datasets" / "my dir").mkdir()  # not a dataset name: someone else's, left alone by gc
    (home / "datasets" / "my dir" / "notes.txt").write_text("mine")
    assert run(capsys, "dataset", "gc").code == 0
    assert (home / "datasets" / "my dir" / "notes.txt").exists()
    assert run(capsys, "dataset", "verify", "host").code == 0 and run(capsys, "dataset", "verify", "ext").code == 0


def test_the_store_path_of_a_version_whose_data_is_gone_is_refused(capsys, home, tmp_path):
    """Two entries at one path: `rm` of the first deleted the second's data."""
    import shutil

    store = tmp_path / "same.zarr"
    make(capsys, "pa", "--store", str(store), count=4)
    shutil.rmtree(store)  # by hand
    r = run(capsys, "dataset", "create", "pb", "--count", "4", *ARGS, "--store", str(store))
    assert one_line_error(r) and f"--store {store} is where pa@v1 is registered (its data is gone)" in r.err
    assert not store.exists() and run(capsys, "dataset", "rm", "pa@v1").code == 0
    make(capsys, "pb", "--store", str(store), count=4)


def test_a_store_path_that_is_not_utf8_is_refused_before_any_work(capsys, home, tmp_path):
    """The catalog keeps a --store path as SQLite text: one named in another encoding failed with 'internal
    UnicodeEncodeError' (from the store's lock; past it, the registration would fail after the generation)."""
    store = Path(os.fsdecode(os.fsencode(tmp_path) + b"/\xe9t\xe9.zarr"))
    r = run(capsys, "dataset", "create", "latin", "--count", "5", *ARGS, "--store", store)
    assert one_line_error(r) and "\\xe9t\\xe9.zarr: the path is not UTF-8" in r.err, r.err
    assert "internal" not in r.err and [p for p in os.listdir(tmp_path) if p != "home"] == []  # no store, no partial


def test_a_reference_whose_tag_is_not_utf8_is_unknown_not_internal(capsys, home):
    """``NAME@`` followed by bytes that are not UTF-8 (a mistyped tag in a Latin-1 terminal) reached SQLite and
    failed with 'internal UnicodeEncodeError' in info, verify, diff, export, rm, untag and train."""
    make(capsys, "a", count=5)
    bad = "a@t\udce9"  # what Python makes of the argument bytes b"a@t\xe9"
    for args, message in [(["info", bad], "has no version or tag"), (["verify", bad], "has no version or tag"),
                          (["diff", "a", bad], "has no version or tag"), (["rm", bad], "has no version or tag"),
                          (["untag", bad], "has no tag")]:  # fmt: skip
        r = run(capsys, "dataset", *args)
        assert one_line_error(r) and message in r.err and "internal" not in r.err, (args, r.err)
    assert run(capsys, "dataset", "verify", "a").code == 0


def test_names_and_tags_with_a_trailing_newline_are_refused(capsys, home):
    r = run(capsys, "dataset", "create", "nl\n", "--count", "5", *ARGS)
    assert one_line_error(r) and "invalid dataset name" in r.err
    make(capsys, "a", count=5)
    r = run(capsys, "dataset", "tag", "a@v1", "t1\n")
    assert r.code != 0 and run(capsys, "dataset", "rm", "a@v1").code == 0  # no stray tag holds it


def test_a_tag_ending_in_zarr_is_refused(capsys, home):
    # NAME@T.zarr reads as a store path: such a tag could be made, then neither used nor untagged
    make(capsys, "a", count=5)
    r = run(capsys, "dataset", "tag", "a@v1", "final.zarr")
    assert one_line_error(r) and "invalid tag 'final.zarr'" in r.err
    assert run(capsys, "dataset", "rm", "a@v1").code == 0  # no tag holds it


def test_a_tag_that_reads_as_a_version_is_refused_and_an_old_one_still_works(capsys, home):
    """V2, v02 and v0 were accepted as tags: `a@v02` then meant a tag, not v2."""
    import sqlite3

    make(capsys, "a", count=4)
    for tag in ("V2", "v02", "v0", "V1", "v1"):
        r = run(capsys, "dataset", "tag", "a@v1", tag)
        assert one_line_error(r) and f"invalid tag {tag!r}" in r.err, tag
    assert "(v2, V2, v02: a version)" in r.err
    assert run(capsys, "dataset", "tag", "a@v1", "v2-final").code == 0  # more than v and digits: a tag
    db = sqlite3.connect(home / "catalog.sqlite")  # one an older daguerre tagged
    db.execute("INSERT INTO tags VALUES ('a', 'v02', 1, '2026-01-01T00:00:00+00:00')")
    db.commit()
    db.close()
    assert open_dataset("a@v02").attrs["version"] == "v1"
    assert run(capsys, "dataset", "untag", "a@v02").code == 0 and run(capsys, "dataset", "untag", "a@v2-final").code == 0
    assert run(capsys, "dataset", "rm", "a@v1").code == 0  # no tag holds it


def test_oversized_counts_and_shards_fail_before_any_work(capsys, home):
    r = run(capsys, "dataset", "create", "big", "--count", str(10**15), *ARGS)
    assert one_line_error(r) and "need at least 4.0 EB and" in r.err
    r = run(capsys, "dataset", "create", "big", "--count", "4", *ARGS[:-4], "--shard-size", "100000000")
    assert one_line_error(r) and "--shard-size must not exceed the larger of --count (4) and 64" in r.err
    assert not list((home / "datasets").glob("big/.partial-*"))


def _attrs_path(ref):
    return Path(open_dataset(ref).path) / "zarr.json"


def test_verify_catches_an_image_array_whose_data_type_was_changed(capsys, home):
    """The same bytes declared int8: verify said ok (their checksums match) while ds[i] held negative pixels."""
    make(capsys, "t", count=4)
    arr = _attrs_path("t").parent / "mask" / "zarr.json"
    m = json.loads(arr.read_text())
    arr.write_text(json.dumps(m | {"data_type": "int8"}))
    r = run(capsys, "dataset", "verify", "t")
    assert one_line_error(r) and "array 'mask' has data type \"int8\", not uint8" in r.err
    with pytest.raises(DaguerreError, match="not uint8"):
        open_dataset("t")


def test_a_store_whose_metadata_or_shard_is_a_fifo_is_refused_not_waited_on(capsys, home, tmp_path):
    """A store path (`dataset verify PATH`, `bench -d PATH`, `--store PATH`) whose zarr.json or a shard was a FIFO
    waited for a writer for ever."""
    import shutil

    from cli_helpers import run_subprocess

    make(capsys, "x", count=4)
    store = Path(open_dataset("x").path)
    for name, inside in (("meta", "zarr.json"), ("array", "clean/zarr.json"), ("shard", "clean/c/0/0/0/0")):
        shutil.copytree(store, tmp_path / name)
        (tmp_path / name / inside).unlink()
        os.mkfifo(tmp_path / name / inside)
    r = run_subprocess("dataset", "create", "y", "--count", "4", *ARGS, "--store", tmp_path / "meta", timeout=60)  # old: TimeoutExpired
    assert r.code == 1 and r.err == f"error: {tmp_path / 'meta'} already exists; choose another --store or remove it\n", r.err
    for name in ("meta", "array", "shard"):
        r = run_subprocess("dataset", "show", tmp_path / name, "--out", tmp_path / "sheet.png", timeout=60)
        assert r.code == 1 and len(r.err.splitlines()) == 1 and "not a regular file" in r.err, r.err
        assert f"{tmp_path / name / ('clean/c/0/0/0/0' if name == 'shard' else '')}".rstrip("/") in r.err, r.err
    assert not (tmp_path / "sheet.png").exists()


def test_reusing_a_version_whose_array_metadata_is_a_fifo_does_not_wait_on_it(capsys, home):
    """The reuse's check of the stored zstd level (for its warning) read clean/zarr.json with read_text: a FIFO
    there made the same create wait for a writer for ever."""
    from cli_helpers import run_subprocess

    make(capsys, "x", count=4)
    meta = Path(open_dataset("x").path) / "clean" / "zarr.json"
    meta.unlink()
    os.mkfifo(meta)
    r = run_subprocess("dataset", "create", "x", "--count", "4", *ARGS, timeout=60)  # old: TimeoutExpired
    assert r.code == 0 and "x@v1 already has this lineage" in r.out, r.err


def test_verify_catches_a_cut_shard_list_and_damaged_arrays(capsys, home):
    make(capsys, "t", count=8)
    p = _attrs_path("t")
    meta = json.loads(p.read_text())
    good = p.read_text()
    meta["attributes"]["daguerre"]["shards"] = meta["attributes"]["daguerre"]["shards"][:1]
    p.write_text(json.dumps(meta))
    r = run(capsys, "dataset", "verify", "t")
    assert one_line_error(r) and "1 shard checksums recorded, 2 expected" in r.err
    assert "dataset checksum does not match" in r.err
    p.write_text(good)
    assert run(capsys, "dataset", "verify", "t").code == 0
    chunk = p.parent / "clean" / "c" / "0" / "0" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[0] ^= 0xFF  # the shard index's first chunk now starts with garbage: zstd refuses it
    chunk.write_bytes(bytes(data))
    make(capsys, "u", count=4)
    r = run(capsys, "dataset", "verify", "--all", "--json")
    assert r.code != 0 and "internal" not in r.err
    got = {x["ref"]: x for x in json.loads(r.out)}
    assert got["u@v1"]["ok"] and not got["t@v1"]["ok"]  # every version checked: the bad one does not stop the run
    assert any(x.startswith("shard 0 (samples 0-3): clean") for x in got["t@v1"]["problems"])
    import shutil

    shutil.rmtree(p.parent / "mask")
    r = run(capsys, "dataset", "verify", "t")
    assert one_line_error(r) and "'mask' is missing" in r.err


def test_version_numbers_are_never_reused(capsys, home):
    make(capsys, "n", "--seed", "1")
    make(capsys, "n", "--seed", "2")
    first_v2 = open_dataset("n@v2").attrs["identity"]
    assert run(capsys, "dataset", "rm", "n@v2").code == 0
    r = make(capsys, "n", "--seed", "3")
    assert "created n@v3" in r.out
    r = run(capsys, "dataset", "info", "n@v2")
    assert one_line_error(r) and "has no version v2" in r.err
    assert open_dataset("n@v3").attrs["identity"] != first_v2


def test_a_reused_version_says_which_store_and_zstd_level_were_not_applied(capsys, home, tmp_path):
    """A create whose lineage NAME@vN has reused it in silence: nothing was written at --store, and --zstd-level was
    ignored while the message said "same ... layout"."""
    make(capsys, "t", "--store", tmp_path / "t.zarr", count=4)
    r = make(capsys, "t", "--store", tmp_path / "t.zarr", count=4)  # the same command again: all applied
    assert "t@v1 already has this lineage" in r.out and r.err == ""
    r = make(capsys, "t", "--store", tmp_path / "copy.zarr", count=4)
    assert f"reusing it: {tmp_path / 't.zarr'}" in r.out and not (tmp_path / "copy.zarr").exists()
    assert f"warning: --store {tmp_path / 'copy.zarr'} not applied: t@v1 was reused as it is ({tmp_path / 't.zarr'});" in r.err
    assert "create it under another name, or `daguerre dataset rm t@v1` first" in r.err
    r = make(capsys, "t", "--zstd-level", "5", "--json", count=4)
    assert "--zstd-level 5 not applied" in r.err and "zstd level -1" in r.err
    assert json.loads(r.out)["not_applied"] == {"zstd_level": {"requested": 5, "reused": -1}}
    r = make(capsys, "u", "--zstd-level", "5", count=4)  # under another name: a new version with them
    assert "created u@v1" in r.out
    assert json.loads(make(capsys, "u", "--zstd-level", "5", "--json", count=4).out)["not_applied"] == {}
    r = make(capsys, "u", "--json", count=4)  # no --zstd-level typed: the default is no request (was "--zstd-level -1 not applied")
    assert r.err == "" and json.loads(r.out)["not_applied"] == {} and json.loads(r.out)["reused"]
    r = make(capsys, "u", "--store", tmp_path / "u2.zarr", count=4)
    assert f"warning: --store {tmp_path / 'u2.zarr'} not applied: u@v1 was reused as it is (" in r.err and "zstd" not in r.err


def test_crash_before_commit_with_store_is_adopted(capsys, home, monkeypatch, tmp_path):
    spec = build_spec("s", "builtin:samples", 6, 32, 0, shard_size=3)
    crash_before_commit(monkeypatch, spec, store=str(tmp_path / "s.zarr"))
    assert (tmp_path / "s.zarr" / "zarr.json").exists()
    res = create_dataset(spec, store=str(tmp_path / "s.zarr"), workers=1, scheduler="threads")
    assert res.reused and res.version.ref == "s@v1" and Path(res.version.path) == (tmp_path / "s.zarr").absolute()
    other = build_spec("s", "builtin:samples", 6, 32, 1, shard_size=3)  # another lineage: not adopted
    with pytest.raises(DaguerreError, match="already exists"):
        create_dataset(other, store=str(tmp_path / "s.zarr"), workers=1, scheduler="threads")


def test_sources_are_recorded_so_reproduce_works_from_anywhere(capsys, home, tmp_path, monkeypatch):
    src = tmp_path / "work" / "src"
    src.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(src / f"{i}.png")
    monkeypatch.chdir(tmp_path / "work")
    assert run(capsys, "dataset", "create", "rel", "--count", "4", "--source", "src", "--size", "32", "--scheduler", "threads").code == 0
    assert run(capsys, "dataset", "create", "gl", "--count", "4", "--source", "src/*.png", "--size", "32", "--scheduler", "threads").code == 0
    make(capsys, "base", count=4)
    assert run(capsys, "dataset", "create", "again", "--count", "4", "--source", "dataset:base", "--size", "32", "--scheduler", "threads").code == 0
    assert open_dataset("rel").attrs["source"]["spec"] == str(src.absolute())
    assert open_dataset("again").attrs["source"]["spec"] == "dataset:base@v1"  # pinned
    make(capsys, "base", "--seed", "9", count=4)  # base@v2 must not change what `again` was made from
    monkeypatch.chdir(tmp_path)
    for ref in ("rel", "gl", "again"):
        r = run(capsys, "dataset", "reproduce", ref, "--scheduler", "threads")
        assert r.code == 0, (ref, r.err)


def test_export_refuses_a_folder_that_is_not_empty(capsys, home, tmp_path):
    make(capsys, "x", count=4)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    r = run(capsys, "dataset", "export", "x", "--out", tmp_path / "out")
    assert one_line_error(r) and "not an empty folder" in r.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["keep.txt"]
    assert run(capsys, "dataset", "export", "x", "--out", tmp_path / "fresh").code == 0
    make(capsys, "y", "--seed", "9", count=4)  # another dataset (the same command would make the same one)
    r = run(capsys, "dataset", "export", "y", "--out", tmp_path / "fresh")
    assert one_line_error(r) and "holds an export of another dataset" in r.err


def test_a_catalog_whose_pages_a_power_cut_zeroed_is_named_not_an_internal_error(capsys, home):
    """The header and schema survived, the pages after them were zeros: every command opened the catalog, then
    failed at its first query with "internal DatabaseError: database disk image is malformed"."""
    for seed in range(3):
        make(capsys, "z", "--seed", str(seed), count=4)
    run(capsys, "dataset", "tag", "z@v1", "kept")
    cat = home / "catalog.sqlite"
    data = bytearray(cat.read_bytes())
    data[8192:] = bytes(len(data) - 8192)
    cat.write_bytes(bytes(data))
    for args in (["ls"], ["info", "z"], ["verify", "--all"], ["gc"], ["tag", "z@v2", "t"], ["rm", "z@v3"]):
        r = run(capsys, "dataset", *args)
        assert one_line_error(r) and f"the catalog {cat} is unreadable" in r.err and "internal" not in r.err, (args, r.err)
    assert len(list((home / "datasets" / "z").glob("v*.zarr"))) == 3  # gc deleted nothing


def test_a_catalog_that_cannot_be_written_is_named_not_an_internal_error(capsys, home):
    """A full disk or a file-size limit (`ulimit -f`) fails SQLite's journal write, SQLite rolls back by itself,
    and the ROLLBACK after it raised "internal OperationalError: cannot rollback - no transaction is active"."""
    import resource

    make(capsys, "w", count=4)
    run(capsys, "dataset", "tag", "w@v1", "kept")

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    for args in (["tag", "w@v1", "t"], ["rm", "w@v1", "--force"], ["untag", "w@kept"]):
        p = subprocess.run([sys.executable, "-c", "import cli; cli.main()", "dataset", *args], capture_output=True, text=True,
                           env={**os.environ, "DAGUERRE_HOME": str(home)}, preexec_fn=limited, timeout=120)  # fmt: skip
        assert p.returncode == 1 and p.stderr.startswith(f"error: the catalog {home / 'catalog.sqlite'} cannot be written ("), p.stderr
        assert "internal" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    v = Catalog().resolve("w@kept")
    assert v.ref == "w@v1" and v.tags == ("kept",) and open_dataset("w@v1").attrs["complete"]


def test_export_refuses_a_folder_whose_mark_is_a_fifo_or_device_unread(capsys, home, tmp_path):
    """An --out whose .daguerre-export.json was a FIFO waited for a writer for ever (a link to /dev/zero: read
    until memory ran out); it is a folder that is not empty, as any other. A mark nested thousands deep was an
    internal RecursionError."""
    from cli_helpers import run_subprocess

    make(capsys, "x", count=4)
    deep = lambda p: p.write_text("[" * 100_000 + "]" * 100_000)  # noqa: E731
    for name, place in (("fifo", os.mkfifo), ("zero", lambda p: os.symlink("/dev/zero", p)), ("deep", deep)):
        (tmp_path / name).mkdir()
        place(tmp_path / name / ".daguerre-export.json")
        r = run_subprocess("dataset", "export", "x", "--out", tmp_path / name, timeout=60)  # the old code: a TimeoutExpired
        assert r.code == 1 and r.err == f"error: {tmp_path / name} is not an empty folder; export into a new one\n", r.err


def test_two_exports_into_one_folder_never_mix_datasets(capsys, home, tmp_path, monkeypatch):
    """Two exports of different datasets started together into one new folder both found it empty; each wrote
    its mark and its samples, and both reported success: one folder, two datasets' pixels, the second's mark."""
    import pipelines.datasets as pd
    from pipelines import export_png

    make(capsys, "x", count=4)
    make(capsys, "y", "--seed", "9", count=4)
    out, real, other = tmp_path / "png", pd.atomic_write_bytes, []

    def racing(path, data, **kw):  # the second export runs while the first writes its mark
        if not other:
            try:
                other.append(export_png(open_dataset("y"), out))
            except DaguerreError as e:
                other.append(str(e))
        real(path, data, **kw)

    monkeypatch.setattr(pd, "atomic_write_bytes", racing)
    assert export_png(open_dataset("x"), out) == (4, 0)
    assert "is being exported to by another process" in other[0]
    x = str(open_dataset("x").path)
    assert {json.loads(p.read_text())["dataset"] for p in out.glob("*.json")} == {x}


def test_an_interrupted_export_resumes_with_the_same_bytes(capsys, home, tmp_path):
    make(capsys, "x", count=5)
    out = tmp_path / "png"
    assert run(capsys, "dataset", "export", "x", "--out", out).code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len(before) == 1 + 5 * 4  # the marker, then degraded, clean, mask and JSON per sample
    # as a kill would leave it: sample 3 half written, sample 4 not at all, a temporary file
    for p in [*out.glob("000003.*.png")][:2] + [*out.glob("000004.*")] + [out / "000003.json"]:
        p.unlink()
    (out / "000003.degraded.png").write_bytes(b"torn")
    (out / ".tmpjunk.tmp").write_bytes(b"x")
    kept = (out / "000001.json").stat().st_mtime_ns
    r = run(capsys, "dataset", "export", "x", "--out", out)
    assert r.code == 0 and "exported 2 samples" in r.out and "3 were already there" in r.out, r.out
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert (out / "000001.json").stat().st_mtime_ns == kept  # complete samples are not rewritten
    r = run(capsys, "dataset", "export", "x", "--out", out)
    assert r.code == 0 and "exported 0 samples" in r.out and "5 were already there" in r.out
    # as a power cut can leave it: the JSON (written last) on disk, an image's bytes not
    (out / "000002.clean.png").write_bytes(b"")
    r = run(capsys, "dataset", "export", "x", "--out", out)
    assert r.code == 0 and "exported 1 samples" in r.out and "4 were already there" in r.out, r.out
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_an_export_syncs_each_file_before_its_name_and_the_folder_before_it_counts_the_sample(capsys, home, tmp_path, monkeypatch):
    """Exported PNGs and JSONs were renamed into place unsynced: after a power cut an export that had
    reported success could hold empty images. Each file's bytes are synced before its rename, and the
    folder after the rename, before the sample is counted (progress) and before export returns."""
    import pipelines.datasets as pd
    from pipelines import export_png

    make(capsys, "x", count=10)
    ds = open_dataset("x")
    monkeypatch.setattr(pd, "EXPORT_BATCH", 4)  # several batches, the last one short
    out = tmp_path / "png"
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("sync", os.readlink(f"/proc/self/fd/{fd}"))), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("name", str(a), str(b))), real_replace(a, b))[1])
    assert export_png(ds, out, on_sample=lambda: events.append(("counted",))) == (10, 0)
    events.append(("returned",))
    renames = [k for k, e in enumerate(events) if e[0] == "name"]
    assert {os.path.basename(events[k][2]) for k in renames} == {p.name for p in out.iterdir()} and len(renames) == 1 + 10 * 4
    counted = [k for k, e in enumerate(events) if e[0] in ("counted", "returned")]
    for k in renames:
        assert ("sync", events[k][1]) in events[:k]  # the temporary's bytes, before its rename
        i = os.path.basename(events[k][2]).split(".")[0]
        until = counted[int(i)] if i.isdigit() else counted[-1]  # where the sample is counted (the mark: export returns)
        assert ("sync", str(out)) in events[k:until]  # its name synced before
    samples = [os.path.basename(events[k][2]) for k in renames if not events[k][2].endswith(pd.EXPORT_MARK)]
    assert all(samples[j + 3].startswith(samples[j][:6]) and samples[j + 3].endswith(".json") for j in range(0, 40, 4))  # JSON last


def _export_killed(out: Path, at: str, calls: int) -> None:
    """An export SIGKILLed (no cleanup runs) at its ``calls``-th ``os.fsync`` or ``os.replace``, in the second batch."""
    from cli_helpers import run_python

    r = run_python(f"""
import os, signal, itertools
import pipelines.datasets as pd
from pipelines import export_png, open_dataset
pd.EXPORT_BATCH = 3
count, real = itertools.count(1), os.{at}
def dying(*a):
    if next(count) == {calls}:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*a)
os.{at} = dying
export_png(open_dataset("x"), {str(out)!r})
""", timeout=120)
    assert r.returncode == -9, r.stderr[-2000:]


@pytest.mark.parametrize("at, calls", [("fsync", 20), ("replace", 16)])  # amid the second batch's syncs, its renames
def test_an_export_killed_midway_leaves_no_partial_file_under_a_final_name_and_resumes(capsys, home, tmp_path, at, calls):
    make(capsys, "x", count=8)
    whole = tmp_path / "whole"
    assert run(capsys, "dataset", "export", "x", "--out", whole).code == 0
    expected = {p.name: p.read_bytes() for p in whole.iterdir()}
    out = tmp_path / "png"
    _export_killed(out, at, calls)
    left = {p.name: p.read_bytes() for p in out.iterdir() if not p.name.endswith(".tmp")}
    assert all(expected[name] == data for name, data in left.items())  # whatever has a name is whole
    assert 1 + 3 * 4 <= len(left) < len(expected) and list(out.glob(".*.tmp"))  # the first batch done, the second not
    r = run(capsys, "dataset", "export", "x", "--out", out)
    assert r.code == 0 and "exported 5 samples" in r.out and "3 were already there" in r.out, r.out
    assert {p.name: p.read_bytes() for p in out.iterdir()} == expected


def test_an_export_stopped_by_an_error_leaves_no_temporaries(capsys, home, tmp_path, monkeypatch):
    """Ctrl-C or an error amid a batch: its temporaries are deleted, what was committed stays whole."""
    import pipelines.datasets as pd
    from pipelines import export_png

    make(capsys, "x", count=8)
    monkeypatch.setattr(pd, "EXPORT_BATCH", 3)
    real, calls = pd.encode_png, []

    def interrupted(*a, **kw):
        calls.append(1)
        if len(calls) == 3 * 3 + 2:  # the fourth sample's second image
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(pd, "encode_png", interrupted)
    out = tmp_path / "png"
    with pytest.raises(KeyboardInterrupt):
        export_png(open_dataset("x"), out)
    assert sorted(p.name for p in out.iterdir()) == sorted([pd.EXPORT_MARK] + [f"00000{i}.{f}" for i in range(3) for f in
                                                                                 ("clean.png", "degraded.png", "json", "mask.png")])  # fmt: skip


def test_an_export_stopped_by_a_damaged_shard_keeps_the_samples_before_it(capsys, home, tmp_path):
    """The samples of the shards before the damaged one were exported whole, and stay (now written in batches)."""
    make(capsys, "t", "--zstd-level", "-100", count=8)  # stored nearly raw: the flipped byte decodes
    shard = _attrs_path("t").parent / "clean" / "c" / "1" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0x55
    shard.write_bytes(bytes(data))
    r = run(capsys, "dataset", "export", "t", "--out", tmp_path / "x")
    assert one_line_error(r) and "shard 1 is damaged (clean checksum mismatch)" in r.err
    assert sorted(p.name for p in (tmp_path / "x").glob("0*.json")) == [f"00000{i}.json" for i in range(4)]
    assert not list((tmp_path / "x").glob(".*.tmp"))


def test_an_unwritable_catalog_fails_before_generating(capsys, home, monkeypatch):
    import sqlite3

    import pipelines.catalog as catalog_mod

    make(capsys, "w", count=4)  # the catalog exists; now open it read-only, as a read-only file or home would be
    real_connect = sqlite3.connect
    monkeypatch.setattr(catalog_mod.sqlite3, "connect", lambda path, **kw: real_connect(f"file:{path}?mode=ro", uri=True, **kw))
    r = run(capsys, "dataset", "create", "w2", "--count", "4", *ARGS)
    assert one_line_error(r) and "catalog.sqlite cannot be written" in r.err
    assert not list((home / "datasets").glob("w2/.partial-*"))  # nothing generated


def test_gc_keeps_data_when_the_home_is_reached_by_another_path(capsys, home, tmp_path, monkeypatch):
    """A symlinked, moved or differently mounted home: the catalog's paths must still protect the data."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    monkeypatch.setenv("DAGUERRE_HOME", str(tmp_path / "link" / "h"))
    make(capsys, "keep", count=4)
    monkeypatch.setenv("DAGUERRE_HOME", str(real / "h"))
    r = run(capsys, "dataset", "gc", "--json")
    assert r.code == 0 and json.loads(r.out)["items"] == []
    assert run(capsys, "dataset", "verify", "keep").code == 0


def test_list_and_inspect_are_aliases_of_ls_and_info(capsys, home):
    """The design card names the commands list and inspect; they answer exactly as ls and info."""
    make(capsys, "a", "--seed", "1")
    for group, alias, name, arg in [("dataset", "list", "ls", []), ("dataset", "inspect", "info", ["a"]),
                                    ("zoo", "list", "ls", []), ("recipes", "list", "ls", []), ("ops", "list", "ls", [])]:
        canonical, aliased = run(capsys, group, name, *arg, "--json"), run(capsys, group, alias, *arg, "--json")
        assert canonical.code == 0 and aliased.code == 0, (group, alias, aliased.err)
        assert aliased.out == canonical.out and json.loads(aliased.out), (group, alias)
    r = run(capsys, "dataset", "--help")
    assert "ls (list)" in r.out and "info (inspect)" in r.out
    r = run(capsys, "dataset", "inspect", "nope")
    assert one_line_error(r) and "unknown dataset 'nope'" in r.err
    r = run(capsys, "dataset", "lst")
    assert r.code != 0 and "No such command 'lst'" in r.err


def test_damage_that_reading_commands_used_to_miss(capsys, home, tmp_path):
    make(capsys, "t", "--zstd-level", "-100", count=8)  # stored nearly raw: a flipped byte decodes, silently wrong
    p = _attrs_path("t")
    good = p.read_text()
    shard = p.parent / "clean" / "c" / "0" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0x55
    shard.write_bytes(bytes(data))
    r = run(capsys, "dataset", "export", "t", "--out", tmp_path / "x")
    assert one_line_error(r) and "shard 0 is damaged (clean checksum mismatch)" in r.err
    assert not list((tmp_path / "x").glob("00000*.json"))  # nothing of the damaged shard
    data[len(data) // 3] ^= 0x55
    shard.write_bytes(bytes(data))
    meta = json.loads(good)
    meta["attributes"]["daguerre"]["shards"] = meta["attributes"]["daguerre"]["shards"][:1]
    p.write_text(json.dumps(meta))
    r = run(capsys, "dataset", "reproduce", "t", "--workers", "1", "--scheduler", "threads")
    assert r.code != 0 and "records 1 shard checksums, its lineage makes 2" in r.out + r.err
    for damage, message in [(lambda m: [], "not a daguerre dataset"),
                            (lambda m: m["attributes"]["daguerre"].pop("count") and m, "damaged attributes"),
                            (None, "has shape [8, 48, 48], its attributes say [8, 48, 48, 3]")]:  # fmt: skip
        if damage is None:
            p.write_text(good)
            arr = p.parent / "clean" / "zarr.json"
            m = json.loads(arr.read_text())
            m["shape"] = m["shape"][:3]
            arr.write_text(json.dumps(m))
        else:
            p.write_text(json.dumps(damage(json.loads(good))))
        for cmd in (["info", "t"], ["show", "t", "--out", tmp_path / "s.png"], ["export", "t", "--out", tmp_path / "y"]):
            r = run(capsys, "dataset", *cmd)
            assert one_line_error(r) and message in r.err and "internal" not in r.err, (cmd, r.err)
    r = run(capsys, "dataset", "verify", "nope")
    assert one_line_error(r) and "unknown dataset 'nope'" in r.err and "CORRUPT" not in r.out
    r = run(capsys, "dataset", "reproduce", "t", "--workers", "0")
    assert one_line_error(r) and "'--workers' / '-w': 0 is not in the range x>=1" in r.err and r.code == 2


def test_a_foreign_catalog_is_one_line(capsys, home):
    import sqlite3

    home.mkdir(parents=True)
    db = sqlite3.connect(home / "catalog.sqlite")
    db.execute("CREATE TABLE versions (a INTEGER)")
    db.commit()
    db.close()
    r = run(capsys, "dataset", "ls")
    assert one_line_error(r) and "is not daguerre's: its table 'versions' lacks" in r.err


def test_array_metadata_without_a_shape_is_one_line_not_internal(capsys, home, tmp_path):
    make(capsys, "am", count=4)
    arr = _attrs_path("am").parent / "clean" / "zarr.json"
    meta = json.loads(arr.read_text())
    del meta["shape"]
    arr.write_text(json.dumps(meta))
    for cmd in (["verify", "am"], ["show", "am", "--out", tmp_path / "s.png"]):
        r = run(capsys, "dataset", *cmd)
        assert one_line_error(r) and "array 'clean' has shape [], its attributes say [4, 48, 48, 3]" in r.err and "KeyError" not in r.err, (cmd, r.err)


@pytest.mark.parametrize("shape", [4, None, "4", {"4": 48}])
def test_array_metadata_whose_shape_is_not_a_list_is_one_line_not_internal(capsys, home, tmp_path, shape):
    """A shape of 4 or null said 'error: internal TypeError: 'int' object is not iterable'; a mapping was read as its keys."""
    make(capsys, "am", count=4)
    arr = _attrs_path("am").parent / "clean" / "zarr.json"
    meta = json.loads(arr.read_text())
    meta["shape"] = shape
    arr.write_text(json.dumps(meta))
    for cmd in (["info", "am"], ["verify", "am"], ["show", "am", "--out", tmp_path / "s.png"]):
        r = run(capsys, "dataset", *cmd)
        assert one_line_error(r) and f"array 'clean' has shape {json.dumps(shape)}, its attributes say [4, 48, 48, 3]" in r.err, (cmd, r.err)


def test_recipe_diff_lists_steps_in_their_order():
    from degrade import load_recipe
    from pipelines.versioning import recipe_diff

    a = load_recipe("old-photo").canonical()
    b = json.loads(json.dumps(a))
    for k in (10, 1, 2):
        b["steps"][k]["p"] = 0.99
    assert [line.split(".p ")[0] for line in recipe_diff(a, b)] == ["~ steps[1]", "~ steps[2]", "~ steps[10]"]


def test_export_refuses_folders_that_gc_or_rm_would_delete(capsys, home, tmp_path):
    make(capsys, "ex", count=4)
    make(capsys, "ext", count=4, *["--store", str(tmp_path / "ext.zarr")])
    store = open_dataset("ex").path
    for out, message in [(home / "datasets" / "ex" / "png", "which the catalog manages"),
                         (store / "png", "which the catalog manages"),
                         (tmp_path / "ext.zarr" / "png", "is inside the dataset store")]:  # fmt: skip
        r = run(capsys, "dataset", "export", "ex", "--out", out)
        assert one_line_error(r) and message in r.err and not out.exists(), (out, r.err)
    assert run(capsys, "dataset", "export", "ex", "--out", tmp_path / "png").code == 0
    assert collect_garbage(Catalog(), dry_run=True) == []


def _leave_a_finished_partial(spec):
    """A create killed after its data was complete, before registration: a `.partial-…` store."""

    def crash(self, *a, **k):
        raise KeyboardInterrupt("power cut")

    with pytest.MonkeyPatch.context() as m:
        m.setattr(Catalog, "register", crash)
        with pytest.raises(KeyboardInterrupt):
            create_dataset(spec, workers=1, scheduler="threads")


def test_a_gc_killed_halfway_leaves_nothing_that_create_resumes(home, monkeypatch):
    import shutil

    from pipelines.versioning import verify

    spec = build_spec("g", "builtin:samples", 6, 32, 0, shard_size=3)
    _leave_a_finished_partial(spec)
    real_rmtree = shutil.rmtree

    def killed(path, *a, **k):  # gc killed after deleting one array of the leftover
        real_rmtree(Path(path) / "degraded")
        raise KeyboardInterrupt("kill -9")

    with monkeypatch.context() as m:
        m.setattr(shutil, "rmtree", killed)
        with pytest.raises(KeyboardInterrupt):
            collect_garbage(Catalog())
    res = create_dataset(spec, workers=1, scheduler="threads")
    assert not res.reused and res.shards_written == 2  # generated again, not the half-deleted store registered
    assert verify("g").ok
    assert len(collect_garbage(Catalog())) == 1  # the half-deleted leftover is still collected
    assert collect_garbage(Catalog(), dry_run=True) == []


def test_gc_leaves_a_leftover_alone_once_a_create_takes_its_name(home, monkeypatch):
    import contextlib

    import pipelines.catalog as catalog_module

    spec = build_spec("r", "builtin:samples", 6, 32, 0, shard_size=3)
    _leave_a_finished_partial(spec)
    listed, held = catalog_module.garbage, contextlib.ExitStack()

    def then_a_create_starts(cat, *a, **k):  # the create re-run to resume takes the lock right after gc looked
        found = listed(cat, *a, **k)
        if not a and not k:
            held.enter_context(creation_lock("r"))
        return found

    monkeypatch.setattr(catalog_module, "garbage", then_a_create_starts)
    with held:
        assert collect_garbage(Catalog()) == []
    assert list((home / "datasets" / "r").glob(".partial-*"))


@pytest.mark.parametrize("shards", [[1, 2], "x", [{"samples": "x", "sha256": "0", "fields": {}}], [{"samples": [0, 4]}]])
def test_malformed_shard_records_are_one_line_not_internal(capsys, home, tmp_path, shards):
    make(capsys, "m", count=4)
    p = _attrs_path("m")
    meta = json.loads(p.read_text())
    meta["attributes"]["daguerre"]["shards"] = shards
    p.write_text(json.dumps(meta))
    for cmd in (["verify", "m"], ["export", "m", "--out", tmp_path / "x"]):
        r = run(capsys, "dataset", *cmd)
        assert one_line_error(r) and "shard checksum records are malformed" in r.err and "internal" not in r.err, (cmd, r.err)


def test_a_path_object_is_a_store_path_even_named_like_a_dataset(capsys, home, tmp_path, monkeypatch):
    make(capsys, "a", count=4)
    make(capsys, "other", "--seed", "3", count=8)
    import shutil

    shutil.copytree(open_dataset("other").path, tmp_path / "a")  # a store folder called like the catalog's dataset
    monkeypatch.chdir(tmp_path)
    ds = open_dataset(Path("a"))
    assert len(ds) == 8 and ds.attrs["seed"] == 3  # the folder, not the catalog's a@v1
    assert len(open_dataset("a")) == 4  # text is still a reference
    with pytest.raises(DaguerreError, match="no dataset at"):
        open_dataset(Path("missing"))


def test_gc_removes_the_copy_a_killed_reproduce_left_and_not_a_running_ones(capsys, home, monkeypatch):
    import shutil

    import pipelines.versioning as versioning
    from pipelines.catalog import file_lock

    make(capsys, "rp", count=4)
    with monkeypatch.context() as m:  # killed: its cleanup never ran
        m.setattr(versioning.shutil, "rmtree", lambda *a, **k: None)
        assert run(capsys, "dataset", "reproduce", "rp", "--workers", "1", "--scheduler", "threads").code == 0
    left = list((home / "scratch").iterdir())
    assert len(left) == 1 and (left[0] / "copy.zarr").is_dir()
    assert json.loads(run(capsys, "dataset", "gc", "--json").out)["items"] == []  # a minute's grace: it may be starting
    running, starting = home / "scratch" / "reproduce-running", home / "scratch" / "reproduce-starting"
    starting.mkdir()
    for old in (left[0], running):
        old.mkdir(exist_ok=True)
        os.utime(old, (time.time() - 120, time.time() - 120))
    with file_lock(running / ".lock", "busy"):
        os.utime(running, (time.time() - 120, time.time() - 120))
        (running / "copy.zarr").mkdir()
        os.utime(running, (time.time() - 120, time.time() - 120))
        r = run(capsys, "dataset", "gc", "--json")
        assert [x["path"] for x in json.loads(r.out)["items"]] == [str(left[0])]
    assert sorted((home / "scratch").iterdir()) == [running, starting]
    shutil.rmtree(starting)
    shutil.rmtree(running)


def test_reusing_a_lineage_whose_data_is_gone_is_refused_not_reported_as_success(capsys, home):
    import shutil

    make(capsys, "gone", count=4)
    shutil.rmtree(open_dataset("gone").path)
    r = run(capsys, "dataset", "create", "gone", "--count", "4", *ARGS)
    assert one_line_error(r) and "gone@v1 has this lineage but its data is gone" in r.err and "rm gone@v1" in r.err
    assert run(capsys, "dataset", "rm", "gone@v1").code == 0
    r = make(capsys, "gone", count=4)
    assert "created gone@v2" in r.out and len(open_dataset("gone")) == 4


def test_an_rm_cut_short_leaves_nothing_that_create_adopts(capsys, home, tmp_path, monkeypatch):
    import shutil

    from pipelines.versioning import verify

    real_rmtree = shutil.rmtree

    def cut_short(path, *a, **k):  # Ctrl-C or kill -9 after one array was deleted
        real_rmtree(Path(path) / "mask")
        raise KeyboardInterrupt("interrupted rm")

    for name, extra in (("k", ()), ("ks", ("--store", str(tmp_path / "ks.zarr")))):
        make(capsys, name, *extra, count=4)
        with monkeypatch.context() as m:
            m.setattr(shutil, "rmtree", cut_short)
            with pytest.raises(KeyboardInterrupt):
                Catalog().remove(f"{name}@v1")
        r = make(capsys, name, *extra, count=4)  # the same command: generated again, not the half-deleted store adopted
        assert f"created {name}@v2" in r.out, r.out
        assert verify(name).ok
    # both halves are gc's: under datasets/, and beside the --store, which only the catalog's record leads to
    removed = sorted(p.name.split("-")[0] for p, _ in collect_garbage(Catalog()))
    assert removed == [".ks.zarr.removing", ".v1.zarr.removing"], removed
    assert not list(tmp_path.glob(".ks.zarr.removing-*")) and Catalog().removals() == []
    assert collect_garbage(Catalog()) == []


def test_tag_and_rm_racing_leave_no_dangling_tag(capsys, home, monkeypatch):
    make(capsys, "d", "--seed", "1")
    make(capsys, "d", "--seed", "2")
    resolve = Catalog.resolve

    def then(action):
        done = []

        def racing(self, ref):  # the other command commits between this one's resolve and its transaction
            v = resolve(self, ref)
            if not done:
                done.append(True)
                other = Catalog()
                action(other)
                other.close()
            return v

        return racing

    with monkeypatch.context() as m:
        m.setattr(Catalog, "resolve", then(lambda c: c.remove("d@v1")))
        with pytest.raises(DaguerreError, match="removed meanwhile"):
            Catalog().tag("d@v1", "paper")
    for cmd in (["info", "d@paper"], ["verify", "d@paper"], ["rm", "d@paper"], ["tag", "d@v2", "paper"]):
        r = run(capsys, "dataset", *cmd)
        assert "internal" not in r.err and "already points at v1" not in r.err, (cmd, r.err)
    assert run(capsys, "dataset", "tag", "d@v2", "paper").code == 0
    with monkeypatch.context() as m:
        m.setattr(Catalog, "resolve", then(lambda c: c.tag("d@v2", "keep")))
        with pytest.raises(DaguerreError, match=r"is tagged \(keep, paper\)"):
            Catalog().remove("d@v2")
    assert open_dataset("d@keep").attrs["seed"] == 2
    c = Catalog()  # a dangling tag an older daguerre left behind: one clear line, not an internal error
    c.db.execute("INSERT INTO tags VALUES ('d', 'old', 1, '')")
    c.close()
    for cmd in (["info", "d@old"], ["verify", "d@old"], ["rm", "d@old"]):
        r = run(capsys, "dataset", *cmd)
        assert one_line_error(r) and "points at v1, which was removed" in r.err and "internal" not in r.err, (cmd, r.err)
    assert run(capsys, "dataset", "untag", "d@old").code == 0


def test_a_truncated_shard_is_named_not_a_bare_invalid_argument(capsys, home, tmp_path):
    make(capsys, "tr", count=8)
    shard = _attrs_path("tr").parent / "clean" / "c" / "1" / "0" / "0" / "0"
    shard.write_bytes(shard.read_bytes()[:10])  # shorter than the shard's index
    with pytest.raises(DaguerreError, match="shard 1 of clean is truncated"):
        open_dataset("tr")[5]
    r = run(capsys, "dataset", "show", "tr", "--out", tmp_path / "s.png")
    assert one_line_error(r) and "shard 1 of clean is truncated" in r.err
    r = run(capsys, "dataset", "verify", "tr")
    assert one_line_error(r) and "shard 1 (samples 4-7): clean unreadable" in r.err and "Invalid argument" not in r.err


def test_chunks_that_do_not_decode_are_one_line_not_an_internal_error(capsys, home, tmp_path):
    """Corrupt chunk bytes raised what the codec raises (zstd: RuntimeError), so show, bench and training failed
    with an internal error; verify and export alone caught it."""
    import struct

    import google_crc32c

    make(capsys, "cz", count=8)
    store = _attrs_path("cz").parent
    shard = store / "params" / "c" / "0"
    data = bytearray(shard.read_bytes())
    data[:8] = b"\xff" * 8  # the first chunk's zstd magic number
    shard.write_bytes(bytes(data))
    with pytest.raises(DaguerreError, match="sample 0 of params does not decode"):
        open_dataset("cz")[0]
    r = run(capsys, "dataset", "show", "cz", "--out", tmp_path / "s.png")
    assert one_line_error(r) and "does not decode" in r.err and "internal" not in r.err, r.err
    shard = store / "degraded" / "c" / "0" / "0" / "0" / "0"  # an image field, read in batches as training reads it
    data = bytearray(shard.read_bytes())
    data[:8] = b"\xff" * 8
    shard.write_bytes(bytes(data))
    with pytest.raises(DaguerreError, match="shard 0 of degraded does not decode"):
        open_dataset("cz").read_many("degraded", [1, 0])
    # an index entry (with a valid crc32c) that reaches past the data: a pread of 2**62 bytes
    shard = store / "clean" / "c" / "0" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    n = 4 * 16 + 4  # --shard-size 4
    index = bytearray(data[-n:-4])
    index[8:16] = struct.pack("<Q", 2**62)
    data[-n:] = bytes(index) + struct.pack("<I", google_crc32c.value(bytes(index)))
    shard.write_bytes(bytes(data))
    with pytest.raises(DaguerreError, match="shard 0 of clean indexes chunks beyond its data"):
        open_dataset("cz").read_many("clean", [0])
    # a shard size of 0 in an array's metadata divided by zero
    meta_path = store / "mask" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["chunk_grid"]["configuration"]["chunk_shape"][0] = 0
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DaguerreError, match="sample 1 of mask does not decode"):
        open_dataset("cz").read("mask", 1)
    # a codec's configuration that is not an object: an internal AttributeError when the store opened
    meta["chunk_grid"]["configuration"]["chunk_shape"][0] = 4
    meta["codecs"][0]["configuration"]["codecs"][1]["configuration"] = []
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DaguerreError, match="sample 1 of mask does not decode"):
        open_dataset("cz").read("mask", 1)


@pytest.mark.parametrize(
    "edit, message",
    [(lambda a: a.update(seed=7), "seed 7 differs from the lineage's 0"),
     (lambda a: a["lineage"].update(seed=7), "the lineage does not hash to the recorded lineage_hash"),
     (lambda a: a["recipe"]["steps"].pop(), "the recorded recipe does not hash to its recipe_hash"),
     (lambda a: a["source"]["files"].pop(), "the source files or fingerprint differ")],
)  # fmt: skip
def test_verify_catches_edited_settings_that_info_diff_and_reproduce_read(capsys, home, edit, message):
    make(capsys, "s", count=4)
    p = _attrs_path("s")
    meta = json.loads(p.read_text())
    edit(meta["attributes"]["daguerre"])  # the data and every checksum untouched
    p.write_text(json.dumps(meta))
    r = run(capsys, "dataset", "verify", "s")
    assert one_line_error(r) and message in r.err, r.err


@pytest.mark.parametrize(
    "edit, message",
    [(lambda a: a.update(recipe="steps: []"), "recipe is str"),
     (lambda a: a.update(lineage=[1]), "lineage is list"),
     (lambda a: a.update(source=5), "source is int"),
     (lambda a: a.update(versions=["numpy"]), "versions is list"),
     (lambda a: a.update(crop="flip"), "crop is str"),
     (lambda a: a.update(seed="0"), "seed is str"),
     (lambda a: a["source"].update(skipped="none"), "source.skipped is not a list of records"),
     (lambda a: a["source"].update(skipped=[{"path": "x"}]), "source.skipped holds a record without a reason")],
)  # fmt: skip
def test_attributes_of_the_wrong_type_are_one_line_not_an_internal_error(capsys, home, tmp_path, edit, message):
    """A hand-edited or crafted zarr.json (a recipe as text, a list for the lineage) opened, and info, diff,
    show and reproduce then failed with an internal AttributeError or TypeError."""
    make(capsys, "w", count=4)
    p = _attrs_path("w")
    meta = json.loads(p.read_text())
    edit(meta["attributes"]["daguerre"])
    p.write_text(json.dumps(meta))
    for args in (("info", "w"), ("diff", "w", "w"), ("show", "w", "--out", tmp_path / "s.png"), ("reproduce", "w")):
        r = run(capsys, "dataset", *args)
        assert one_line_error(r) and "damaged attributes" in r.err and message in r.err, (args, r.err)
    r = run(capsys, "dataset", "verify", "w")
    assert one_line_error(r) and message in r.err


def test_a_store_claiming_tiles_larger_than_datasets_are_made_with_is_refused(capsys, home, tmp_path):
    """size 100,000 with array shapes to match opened: read_many then allocated 30 GB for one sample."""
    make(capsys, "big", count=4)
    store = _attrs_path("big").parent
    for f in ("", "clean", "degraded", "mask"):
        p = store / f / "zarr.json"
        meta = json.loads(p.read_text())
        if f:
            meta["shape"][1:3] = [100_000, 100_000]
        else:
            meta["attributes"]["daguerre"]["size"] = 100_000
        p.write_text(json.dumps(meta))
    with pytest.raises(DaguerreError, match="damaged attributes"):
        open_dataset("big")
    r = run(capsys, "dataset", "show", "big", "--out", tmp_path / "s.png")
    assert one_line_error(r) and "damaged attributes" in r.err


def test_metadata_nested_thousands_deep_is_one_line(capsys, home):
    make(capsys, "deep", count=4)
    arr = _attrs_path("deep").parent / "params" / "zarr.json"
    arr.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DaguerreError, match="unreadable metadata of array 'params' \\(nested too deep\\)"):
        open_dataset("deep")
    r = run(capsys, "dataset", "info", "deep")
    assert one_line_error(r) and "nested too deep" in r.err and "internal" not in r.err


def test_read_json_gives_metadata_nested_thousands_deep_as_a_value_error(tmp_path):
    """Its callers (reader, create's adoption, gc, rm, resume) each caught json's RecursionError besides ValueError."""
    from pipelines.layout import read_json

    (tmp_path / "zarr.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="^nested too deep$"):
        read_json(tmp_path / "zarr.json")


def test_an_unregistered_store_nested_thousands_deep_is_a_damaged_leftover(capsys, home):
    """create (looking for a store to adopt) and gc (looking for complete ones to keep) failed with an internal
    RecursionError on such a zarr.json in datasets/NAME/."""
    for name in ("deep", "junk"):
        (home / "datasets" / name / "v1.zarr").mkdir(parents=True)
        (home / "datasets" / name / "v1.zarr" / "zarr.json").write_text("[" * 100_000 + "]" * 100_000)
    (home / "datasets" / "deep" / "v2.zarr").mkdir()
    (home / "datasets" / "deep" / "v2.zarr" / "zarr.json").write_text("[]")  # not an object: an internal AttributeError
    r = make(capsys, "deep", count=4)  # not adopted: generated, the leftover set aside for gc
    assert "created deep@v1" in r.out and open_dataset("deep@v1").attrs["count"] == 4
    r = run(capsys, "dataset", "gc")
    assert r.code == 0 and f"removed {home / 'datasets' / 'junk' / 'v1.zarr'}" in r.out and "kept" not in r.out
    assert not (home / "datasets" / "junk").exists() and [p.name for p in (home / "datasets" / "deep").iterdir() if p.name != ".lock"] == ["v1.zarr"]


def test_gc_keeps_complete_stores_when_the_catalog_is_emptied(capsys, home):
    """A 0-byte catalog.sqlite opens as an empty catalog: gc then removed every dataset as garbage."""
    make(capsys, "keep", count=4)
    store = home / "datasets" / "keep" / "v1.zarr"
    before = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    (home / "catalog.sqlite").write_bytes(b"")
    r = run(capsys, "dataset", "gc")
    assert r.code == 0 and f"kept {store}: a complete store that no catalog entry lists" in r.out
    assert {p: p.read_bytes() for p in store.rglob("*") if p.is_file()} == before
    assert json.loads(run(capsys, "dataset", "gc", "--json").out)["kept"] == [str(store)]
    r = run(capsys, "dataset", "gc", "--force")
    assert r.code == 0 and f"removed {store}" in r.out and not store.exists()


def test_rm_leaves_what_was_put_at_a_store_path_since(capsys, home, tmp_path):
    """A --store deleted by hand and its path reused for other files: rm deleted those files with the entry."""
    import shutil

    store = tmp_path / "st.zarr"
    make(capsys, "st", "--store", str(store), count=4)
    shutil.rmtree(store)
    (store / "mine").mkdir(parents=True)
    (store / "mine" / "notes.txt").write_text("keep")
    r = run(capsys, "dataset", "rm", "st@v1")
    assert one_line_error(r) and f"st@v1 is unregistered, but {store} was left in place" in r.err
    assert (store / "mine" / "notes.txt").read_text() == "keep" and json.loads(run(capsys, "dataset", "ls", "--json").out) == []
    assert run(capsys, "dataset", "gc").code == 0 and (store / "mine" / "notes.txt").exists()


def test_an_rm_that_cannot_delete_says_where_the_data_stays(capsys, home, tmp_path, monkeypatch):
    """rm printed "removed" when the delete failed: the data stayed, renamed, where gc never looks (a --store)."""
    import shutil

    make(capsys, "st", "--store", str(tmp_path / "st.zarr"), count=4)

    def denied(path, *a, **k):
        raise PermissionError(13, "Permission denied", str(path))

    with monkeypatch.context() as m:
        m.setattr(shutil, "rmtree", denied)
        r = run(capsys, "dataset", "rm", "st@v1")
    left = list(tmp_path.glob(".st.zarr.removing-*"))
    assert one_line_error(r) and "st@v1 is unregistered, but its data could not be deleted (Permission denied)" in r.err
    assert len(left) == 1 and f"delete {left[0]} by hand" in r.err and "dataset gc` again later" in r.err
    assert "st" not in [v.name for v in Catalog().versions()]
    r = run(capsys, "dataset", "gc", "--dry-run")
    assert r.code == 0 and f"would remove {left[0]}" in r.out and left[0].exists()
    r = run(capsys, "dataset", "gc")
    assert r.code == 0 and f"removed {left[0]}" in r.out and not left[0].exists()
    assert Catalog().removals() == [] and tmp_path.exists()


def test_a_moved_or_copied_home_keeps_its_datasets(capsys, home, tmp_path, monkeypatch):
    """The catalog recorded absolute paths: a copied home read the old copy, its own stores were
    "listed by no entry" for gc, and a moved home lost its datasets. Places under datasets/ are
    recorded relative to the home now, and older catalogs' absolute ones are found in the home."""
    import shutil
    import sqlite3

    make(capsys, "mv", count=4)
    make(capsys, "ext", "--store", str(tmp_path / "ext.zarr"), count=4)
    db = sqlite3.connect(home / "catalog.sqlite")
    assert dict(db.execute("SELECT name, path FROM versions").fetchall()) == {"mv": "datasets/mv/v1.zarr", "ext": str(tmp_path / "ext.zarr")}
    db.execute("UPDATE versions SET path=? WHERE name='mv'", (str(home / "datasets" / "mv" / "v1.zarr"),))  # as older catalogs did
    db.commit()
    db.close()
    for how in ("copy", "move"):
        new = tmp_path / f"home-{how}"
        (shutil.copytree if how == "copy" else shutil.move)(home if how == "copy" else tmp_path / "home-copy", new)
        monkeypatch.setenv("DAGUERRE_HOME", str(new))
        assert Path(Catalog().resolve("mv").path) == new / "datasets" / "mv" / "v1.zarr", how
        assert open_dataset("mv").path == new / "datasets" / "mv" / "v1.zarr" and len(open_dataset("ext")) == 4
        r = run(capsys, "dataset", "gc", "--json")
        assert json.loads(r.out) == {"dry_run": False, "items": [], "kept": []}, how
        r = run(capsys, "dataset", "verify", "mv")
        assert r.code == 0, r.err


def test_a_commit_that_fails_leaves_no_transaction_open(home):
    """A COMMIT that SQLite refuses (a reader holding the catalog past the timeout) leaves the transaction
    open: the error said "nothing was changed in it" while this connection kept its write lock and pending
    rows, and its next write failed with "cannot start a transaction within a transaction"."""
    import sqlite3

    cat = Catalog()
    cat.db.execute("PRAGMA busy_timeout = 100")
    reader = sqlite3.connect(cat.path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT * FROM numbers").fetchall()  # a shared lock, held: the COMMIT cannot get its exclusive one
    with pytest.raises(DaguerreError, match="cannot be written .*nothing was changed in it"):
        with cat.transaction() as db:
            db.execute("INSERT OR REPLACE INTO numbers VALUES ('x', 7)")
    assert not cat.db.in_transaction
    reader.execute("ROLLBACK")
    with cat.transaction() as db:  # the next write goes through
        db.execute("INSERT OR REPLACE INTO numbers VALUES ('y', 1)")
    assert [tuple(r) for r in reader.execute("SELECT * FROM numbers ORDER BY name")] == [("y", 1)]
    reader.close()
    cat.close()


def test_gc_keeps_a_fresh_removal_record_and_dry_run_changes_nothing(home, tmp_path):
    """gc dropped a removal record whose folder did not exist yet: an rm between its commit and its
    rename, which, killed next, left a folder no record led gc to. ``gc --dry-run`` dropped records too."""
    cat = Catalog()
    fresh, old = tmp_path / ".a.zarr.removing-1", tmp_path / ".b.zarr.removing-2"
    with cat.transaction() as db:
        db.execute("INSERT INTO removals VALUES (?, ?)", (str(fresh), datetime.now(timezone.utc).isoformat(timespec="seconds")))
        db.execute("INSERT INTO removals VALUES (?, ?)", (str(old), "2026-01-01T00:00:00+00:00"))

    def recorded():
        return sorted(r[0] for r in cat.db.execute("SELECT path FROM removals"))

    collect_garbage(cat, dry_run=True)
    assert recorded() == [str(fresh), str(old)]
    collect_garbage(cat)
    assert recorded() == [str(fresh)]  # the old record of a gone folder goes, the fresh one stays
    fresh.mkdir()
    (fresh / "f").write_bytes(b"x")  # the rm's rename happened, then the rm was killed
    assert [p for p, _ in collect_garbage(cat)] == [fresh] and not fresh.exists()


def test_a_reproduction_that_differs_says_so_on_stderr_too(capsys, home, monkeypatch):
    """It exited 1 with nothing on stderr (verify names the problem there), also under --json."""
    import pipelines.versioning

    bad = pipelines.versioning.ReproduceReport("p@v1", False, ["shard 2 (samples 6-8): degraded"], {})
    monkeypatch.setattr(pipelines.versioning, "reproduce", lambda *a, **kw: bad)
    for extra in ([], ["--json"]):
        r = run(capsys, "dataset", "reproduce", "p", *extra)
        assert one_line_error(r) and "error: p@v1 differs from its recorded checksums: shard 2" in r.err, r.err
    assert json.loads(r.out)["differing_shards"] == bad.differing_shards


def test_a_create_that_fails_before_any_task_leaves_no_dataset_folder(home, tmp_path, monkeypatch):
    """A create that stopped before its first task (a scheduler that does not answer, Ctrl-C while the workers start)
    left datasets/NAME/ holding its lock and an empty .partial store, which gc emptied but never removed; a create
    into --store left datasets/NAME/.lock behind even when it succeeded. One stopped once its tasks were running
    keeps its partial store: a worker may still be writing to it, and the same command resumes it."""
    import pipelines.generate as generate_module

    spec = build_spec("f", "builtin:samples", 6, 32, 0, shard_size=3)
    with pytest.raises(DaguerreError, match="cannot reach the dask scheduler"):
        create_dataset(spec, address="tcp://127.0.0.1:9")
    assert not (home / "datasets" / "f").exists()
    (home / "datasets" / "h").mkdir()  # there before: never removed by a create
    with pytest.raises(DaguerreError, match="cannot reach the dask scheduler"):
        create_dataset(build_spec("h", "builtin:samples", 6, 32, 0, shard_size=3), address="tcp://127.0.0.1:9")
    assert [p.name for p in (home / "datasets" / "h").iterdir()] == [".lock"]

    def ctrl_c(workers):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(generate_module, "_quiet_pool", ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            create_dataset(spec, workers=1, scheduler="processes")
    assert not (home / "datasets" / "f").exists()
    store = tmp_path / "out" / "f.zarr"
    with pytest.raises(DaguerreError, match="cannot reach the dask scheduler"):
        create_dataset(spec, store=str(store), address="tcp://127.0.0.1:9")
    assert not (home / "datasets" / "f").exists() and list((tmp_path / "out").iterdir()) == []
    assert create_dataset(spec, store=str(store), workers=1, scheduler="threads").path == store
    assert not (home / "datasets" / "f").exists()

    def stopped(*a, **k):  # Ctrl-C once the tasks run, before any shard is done
        raise KeyboardInterrupt

    (home / "datasets" / "g").mkdir(parents=True)  # there before: never removed by a create
    with monkeypatch.context() as m:
        m.setattr(generate_module, "generate_shard", stopped)
        for name in ("f2", "g"):
            with pytest.raises(KeyboardInterrupt):
                create_dataset(build_spec(name, "builtin:samples", 6, 32, 0, shard_size=3), workers=1, scheduler="threads")
    assert len(list((home / "datasets" / "f2").glob(".partial-*.zarr"))) == 1
    assert len(list((home / "datasets" / "g").glob(".partial-*.zarr"))) == 1


def test_gc_removes_dataset_folders_that_hold_only_a_stale_lock_and_says_so(capsys, home):
    """What a create that failed before writing anything left (datasets/NAME/.lock alone), and what an rm of a
    name's last version leaves, stayed for ever: gc skipped the lock and never looked at the folder."""
    (home / "datasets" / "early").mkdir(parents=True)
    (home / "datasets" / "early" / ".lock").write_text("123")
    make(capsys, "last", count=4)
    assert run(capsys, "dataset", "rm", "last@v1").code == 0
    leftover = home / "datasets" / "last"
    assert [p.name for p in leftover.iterdir()] == [".lock"]
    assert json.loads(run(capsys, "dataset", "ls", "--json").out) == []
    r = run(capsys, "dataset", "info", "early")
    assert one_line_error(r) and "unknown dataset 'early'" in r.err
    assert run(capsys, "dataset", "verify", "--all").code == 0
    (home / "datasets" / "busy").mkdir()  # there before the create below (which removes only a folder it made)
    with creation_lock("busy"):  # a create running now: its folder is its own
        r = run(capsys, "dataset", "gc", "--dry-run")
        assert r.code == 0 and f"would remove {home / 'datasets' / 'early'} " in r.out and f"would remove {leftover} " in r.out
        assert "busy" not in r.out and leftover.exists()
        r = run(capsys, "dataset", "gc", "--json")
        assert sorted(Path(x["path"]).name for x in json.loads(r.out)["items"]) == ["early", "last"]
        assert (home / "datasets" / "busy" / ".lock").exists()
    assert not (home / "datasets" / "early").exists() and not leftover.exists()
    r = run(capsys, "dataset", "gc")
    assert f"removed {home / 'datasets' / 'busy'} " in r.out and not (home / "datasets" / "busy").exists()
    assert run(capsys, "dataset", "gc").out.strip() == "0 item(s), 0 B"


def test_gc_goes_on_when_a_lock_only_folder_goes_while_it_looks(capsys, home, monkeypatch):
    """A create's end (or another gc) may remove its lock-only folder between gc's listing and its look inside:
    gc failed with that folder's FileNotFoundError."""
    import shutil

    gone = home / "datasets" / "gone"
    gone.mkdir(parents=True)
    (gone / ".lock").write_text("1")
    real = Path.is_symlink

    def vanish(self):  # gc's last check before it looks inside: the folder goes right then
        if self == gone:
            shutil.rmtree(gone, ignore_errors=True)
        return real(self)

    monkeypatch.setattr(Path, "is_symlink", vanish)
    for args in (["--dry-run"], []):
        gone.mkdir(exist_ok=True)
        (gone / ".lock").write_text("1")
        r = run(capsys, "dataset", "gc", *args)
        assert r.code == 0 and "gone" not in r.out, r.err


def _hold_creation_lock(name: str, until: threading.Event, seconds: float = 5) -> tuple[threading.Thread, threading.Event]:
    """A thread that takes ``name``'s creation lock and holds it until ``until`` is set (``seconds`` at most); returned
    with the event it sets once it holds the lock."""
    held = threading.Event()

    def hold():
        with creation_lock(name):
            held.set()
            until.wait(seconds)

    t = threading.Thread(target=hold)
    t.start()
    return t, held


def test_a_create_waiting_for_a_lock_whose_file_its_holder_deleted_takes_the_new_one(home):
    """The holder of a dataset's lock may delete it (and the emptied folder) before it lets go: the waiter then held
    the lock of a deleted file while a third process took a new one, and two creates of one name ran at once."""
    go, done = threading.Event(), threading.Event()
    a, held = _hold_creation_lock("w", go)  # made the folder: removed at the end, holding only the lock
    assert held.wait(5)
    b, waiter_has_it = _hold_creation_lock("w", done)
    time.sleep(0.2)  # b has opened the lock file and waits for it
    go.set()
    a.join()
    assert waiter_has_it.wait(5)
    try:
        with pytest.raises(DaguerreError, match="being created by another process"):
            with creation_lock("w"):
                pass
    finally:
        done.set()
        b.join()


def test_rm_of_a_version_whose_data_was_deleted_by_hand_says_so(capsys, home, tmp_path):
    """rm of a --store version deleted by hand printed the recorded size as if it had freed it."""
    import shutil

    store = tmp_path / "st.zarr"
    make(capsys, "st", "--store", str(store), count=4)
    make(capsys, "kept", count=4)
    shutil.rmtree(store)
    r = run(capsys, "dataset", "rm", "st@v1")
    assert r.code == 0 and r.out == "removed st@v1 (its data was already gone)\n", r.out
    r = run(capsys, "dataset", "rm", "kept@v1", "--json")
    assert r.code == 0 and json.loads(r.out)["data_was_gone"] is False
