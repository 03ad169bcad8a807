"""CLI: ops, recipes, degrade; byte-identical reruns; bad inputs are one clear line and a non-zero exit."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from cli_helpers import one_line_error, python_ok, run, run_python, run_subprocess
from degrade import load_recipe
from degrade.io import encode_png, read_image
from degrade.samples import real_photo_paths


def test_help_does_not_import_torch():
    r = run_subprocess("--help")
    assert r.code == 0 and "degrade" in r.out
    code = "import sys, cli\ntry:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)"
    assert run_python(code).stdout.strip().endswith("False")


@pytest.mark.parametrize("args", [["dataset", "--help"], ["dataset", "ls"], ["ops", "ls"], ["recipes", "ls"], ["zoo", "ls", "--json"],
                                  ["zoo", "info", "default"], ["zoo", "info", "default", "--json"]])
def test_a_command_that_needs_no_model_does_not_import_torch(args):
    """`zoo ls` reads JSON cards but took 3 s: zoo.store imported zoo.checkpoint, and with it torch. `zoo info`
    loaded every tensor (2 s) to count the parameters, which the safetensors header's shapes give."""
    code = f"import sys, cli\ntry:\n    cli.main({args!r})\nexcept SystemExit as e:\n    assert not e.code, e.code\nprint('torch' in sys.modules)"
    r = run_python(code)
    assert r.stdout.strip().endswith("False"), r.stderr[-500:]


@pytest.mark.parametrize("args", [["--help"], ["degrade", "--help"], ["dataset", "ls"], ["dataset", "ls", "--json"], ["zoo", "ls", "--json"]])
def test_a_command_that_reads_only_the_catalog_or_cards_imports_no_array_library(home, args):
    """`dataset ls` spent 0.25 s importing numpy, OpenCV, numcodecs and every operator: ``pipelines/__init__``
    imported dataset generation, ``degrade/__init__`` the operators, the catalog the image I/O."""
    from pipelines import build_spec, create_dataset

    create_dataset(build_spec("t", "builtin:real", 2, 8, 0, {"steps": [{"op": "jpeg"}]}), workers=1, scheduler="threads")
    code = (f"import sys, cli\ntry:\n    cli.main({args!r})\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'cv2', 'PIL', 'yaml', 'numcodecs', 'zarr', 'dask'}))")
    out = python_ok(code)
    assert out.strip().endswith("[]"), out[-500:]
    assert args[0] != "dataset" or "v1" in out


@pytest.mark.parametrize("args, needed", [(["ops", "ls"], {"numpy", "cv2"}), (["ops", "ls", "--json"], {"numpy", "cv2"}),
                                          (["ops", "show", "jpeg"], {"numpy", "cv2"}), (["recipes", "ls"], {"numpy", "cv2", "yaml"}),
                                          (["recipes", "show", "bopbtl", "--json"], {"numpy", "cv2", "yaml"}),
                                          (["dataset", "info", "t"], {"numpy", "cv2", "yaml"}), (["dataset", "info", "t", "--json"], set()),
                                          (["dataset", "info", "r"], set())])
def test_a_command_that_describes_operators_recipes_or_a_version_imports_only_what_it_needs(home, args, needed):
    """`ops ls` and `recipes ls` imported Pillow for the names of three resampling filters; `dataset info`
    imported the generation code, the sources, numcodecs, and (with --json, or a real dataset's: no recipe to
    print) the reader's numpy, OpenCV, Pillow, YAML and every operator: 0.35 s for what the store's attributes say."""
    if args[0] == "dataset":
        from pipelines import build_spec, create_dataset

        create_dataset(build_spec("t", "builtin:real", 2, 8, 0, {"steps": [{"op": "jpeg"}]}), workers=1, scheduler="threads")
        create_dataset(build_spec("r", "builtin:real", 2, 8, 0, real=True), workers=1, scheduler="threads")
    code = (f"import sys, cli\ntry:\n    cli.main({args!r})\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {{'numpy', 'cv2', 'PIL', 'yaml', 'numcodecs', 'zarr', 'dask', 'imgaug', 'torch'}} - {needed!r}))")
    out = python_ok(code)
    assert out.strip().endswith("[]"), out[-500:]
    assert args[0] != "dataset" or "v1" in out


@pytest.mark.parametrize("signame, line, status", [("SIGINT", "aborted", 130), ("SIGTERM", "terminated", 143)])
def test_ctrl_c_and_sigterm_say_exactly_one_line(signame, line, status):
    """Ctrl-C printed click's blank line before `aborted` (SIGTERM before `terminated`)."""
    code = f"""
import os, signal, threading, time
import cli, zoo.store
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (a background test run ignores SIGINT)
zoo.store.cards = lambda: time.sleep(60)
threading.Timer(0.3, os.kill, (os.getpid(), signal.{signame})).start()
cli.main(["zoo", "ls"])
"""
    r = run_python(code, timeout=60)
    assert (r.returncode, r.stderr) == (status, line + "\n"), (r.returncode, r.stderr[-2000:])


def _cli_with_stdout(fd, *args, close=False):
    import os
    import subprocess
    import sys

    from cli_helpers import ROOT

    return subprocess.run([sys.executable, "-c", "import cli; cli.main()", *args], cwd=ROOT, stdout=fd, stderr=subprocess.PIPE,
                          text=True, timeout=120, preexec_fn=(lambda: os.close(1)) if close else None)  # fmt: skip


def test_a_closed_stdout_is_one_line_and_a_failure():
    """`daguerre dataset ls >&-` printed nothing and exited 0."""
    for args in (["dataset", "ls"], ["zoo", "ls"], ["--help"]):
        r = _cli_with_stdout(None, *args, close=True)
        assert r.returncode == 1 and r.stderr == "error: standard output is closed (redirect it to /dev/null to discard the output)\n", (args, r.stderr)


def test_a_closed_pipe_ends_quietly_with_status_141():
    """`daguerre zoo ls | head -1` ended with status 1 in silence (click's handling, and rich's); like `ls` there, it
    stops quietly with the status of SIGPIPE, and no 'Exception ignored' from Python's flush at exit."""
    import os

    read, write = os.pipe()
    os.close(read)  # the reader has gone before the first line
    try:
        for args in (["zoo", "ls"], ["zoo", "ls", "--json"], ["ops", "ls"], ["dataset", "ls"], ["--help"], ["zoo", "info", "default"]):
            r = _cli_with_stdout(write, *args)
            assert (r.returncode, r.stderr) == (141, ""), (args, r.returncode, r.stderr[-2000:])
    finally:
        os.close(write)


@pytest.mark.parametrize("path, args", [(["bench"], ["--dataset", "d"]), (["dataset", "show"], ["d", "--out", "s.png"]),
                                        (["zoo", "calibrate"], ["b", "-d", "d"])])
def test_sample_counts_are_count_or_n_as_in_degrade_and_the_old_n_still_works(path, args):
    """bench, dataset show and zoo calibrate spelt it --n where degrade and dataset create take -n/--count."""
    import click

    import cli

    cmd = cli.cli
    for name in path:
        cmd = cmd.commands[name]
    for spelling in ("--count", "-n", "--n"):
        with cmd.make_context(" ".join(path), [*args, spelling, "7"]) as ctx:
            assert ctx.params["n"] == 7
    shown = cmd.get_help(click.Context(cmd, info_name=path[-1]))
    assert "-n, --count INTEGER RANGE" in shown and "--n " not in shown and "--n," not in shown, shown
    with pytest.raises(click.BadParameter) as e:
        cmd.make_context(" ".join(path), [*args, "--n", "0"])
    assert "Invalid value for '--count' / '-n': 0 is not in the range" in e.value.format_message()


@pytest.mark.parametrize("args", [
    ["dataset", "create", "d", "--source", "builtin:samples", "-n", "2", "--workers", "0"],
    ["dataset", "create", "d", "--source", "builtin:real", "-n", "2", "--real", "--recipe", "mild"],
    ["dataset", "reproduce", "d@v1", "--workers", "0"],
    ["bench", "-d", "d", "--workers", "0"],
    ["serve", "--workers", "0"], ["serve", "--queue", "-1"], ["serve", "--max-upload-mb", "0"], ["serve", "--timeout", "0"],
    ["train", "mapping", "--pairs", "p", "--vae2", "v"],
    ["train", "scratch", "--pairs", "p", "--workers", "-1"],
    ["restore", "x.png", "--out", "o", "--tile", "0"],
    ["degrade", "x.png", "--out", "o", "--seed", "-1"],
])  # fmt: skip
def test_argument_problems_are_usage_errors(capsys, tmp_path, monkeypatch, args):
    """`--workers 0`, `train mapping` without `--vae1`, `--recipe` with `--real`: the library refused them with
    exit status 1; a value outside an option's range, a missing input, options that exclude each other exit 2."""
    monkeypatch.chdir(tmp_path)
    r = run(capsys, *args)
    assert r.code == 2 and one_line_error(r) and "--help' for" not in r.err and "--help')" in r.err, r.err
    assert not list(tmp_path.iterdir())


def test_the_cli_ranges_are_the_librarys():
    """The ranges that the CLI declares (so that it need not import the library to show them) are the library's."""
    import cli
    from pipelines.layout import MAX_SIZE
    from pipelines.shards import ZSTD_LEVELS
    from zoo.train import MAX_SEED

    create = {p.name: p.type for p in cli.dataset_create.params}
    assert (create["size"].min, create["size"].max) == (8, MAX_SIZE) and (create["zstd_level"].min, create["zstd_level"].max) == ZSTD_LEVELS
    assert {p.name: p.type for p in cli.train_cmd.params}["seed"].max == MAX_SEED


def test_train_inputs_may_come_from_the_config_file(capsys, tmp_path):
    """A missing input is a usage error whether or not --config is given; one the config file holds is not missing."""
    conf = tmp_path / "c.yaml"
    conf.write_text("pairs: p\nvae2: v\n")
    r = run(capsys, "train", "mapping", "--config", conf)
    assert r.code == 2 and one_line_error(r) and "train mapping needs --vae1 (see 'daguerre train --help')" in r.err, r.err
    conf.write_text("pairs: p\nvae1: v\nvae2: v\n")
    r = run(capsys, "train", "mapping", "--config", conf, "--out", tmp_path / "run")
    assert r.code == 1 and one_line_error(r) and "needs" not in r.err, r.err  # on to the library: no dataset p


def test_ops_ls_and_show(capsys):
    r = run(capsys, "ops", "ls", "--json")
    assert r.code == 0
    ops = {o["name"]: o for o in json.loads(r.out)}
    assert ops["scratches"]["kind"] == "structured" and ops["jpeg"]["kind"] == "unstructured"
    assert ops["gaussian_blur"]["params"]["sigma"]["range"] == "float in [0.1, 10.0]"
    r = run(capsys, "ops", "ls")
    assert r.code == 0 and "film_grain" in r.out
    r = run(capsys, "ops", "show", "creases")
    assert r.code == 0 and "cracks" in r.out and "structured" in r.out
    r = run(capsys, "ops", "show", "scrathces")
    assert one_line_error(r) and "did you mean scratches" in r.err


def test_recipes_commands(capsys, tmp_path):
    r = run(capsys, "recipes", "ls")
    assert r.code == 0 and "bopbtl" in r.out and "old-photo" in r.out
    r = run(capsys, "recipes", "show", "bopbtl")
    assert r.code == 0 and r.out.startswith("# recipe_hash: ")
    f = tmp_path / "copy.yaml"
    f.write_text(r.out)
    r2 = run(capsys, "recipes", "validate", str(f))
    assert r2.code == 0 and "ok" in r2.out
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps:\n  - op: gaussian_blur\n    sigma: 99\n")
    r3 = run(capsys, "recipes", "validate", str(bad))
    assert one_line_error(r3) and "steps[0].sigma: 99.0 is outside [0.1, 10.0]" in r3.err
    r4 = run(capsys, "recipes", "validate", f, "--json")
    assert r4.code == 0 and json.loads(r4.out) == [{"file": str(f), "ok": True, "name": "bopbtl", "hash": load_recipe(f).hash, "operators": 7}]
    r5 = run(capsys, "recipes", "validate", bad, "old-photo", "--json")  # every file's result, then a non-zero exit
    rows = json.loads(r5.out)
    assert [(x["file"], x["ok"]) for x in rows] == [(str(bad), False), ("old-photo", True)] and "99.0 is outside" in rows[0]["error"]
    assert one_line_error(r5) and r5.err.startswith(f"error: 1 of 2 recipes invalid: {bad}: steps[0].sigma"), r5.err


@pytest.fixture()
def inputs(tmp_path, photo, gray_photo):
    d = tmp_path / "in"
    d.mkdir()
    (d / "colour.png").write_bytes(encode_png(photo))
    (d / "gray.png").write_bytes(encode_png(gray_photo))
    alpha = np.full(photo.shape[:2], 200, np.uint8)
    alpha[:10] = 0
    (d / "rgba.png").write_bytes(encode_png(photo, alpha))
    sixteen = (photo.astype(np.uint16) * 257)[..., ::-1]
    import cv2

    cv2.imwrite(str(d / "deep.png"), sixteen)
    return d


def _files(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_degrade_writes_triplets_byte_identically(capsys, tmp_path, inputs):
    out1, out2 = tmp_path / "o1", tmp_path / "o2"
    args = ["degrade", str(inputs), "--recipe", "severe", "--seed", "3", "--count", "2"]
    r = run(capsys, *args, "--out", out1, "--sheet", tmp_path / "sheet.png")
    assert r.code == 0, r.err
    run(capsys, *args, "--out", out2)
    f1, f2 = _files(out1), _files(out2)
    assert f1 == f2  # same command, same bytes
    assert len(f1) == 4 * 2 * 3
    assert Image.open(tmp_path / "sheet.png").size[0] > 500
    meta = json.loads(f1["colour-001.json"])
    assert meta["seed"] == 3 and meta["recipe"] == "severe" and meta["params"]
    gray = read_image(out1 / "gray-000.png")
    assert gray.pixels.ndim == 2
    rgba = read_image(out1 / "rgba-000.png")
    assert rgba.alpha is not None and (rgba.alpha[:10] == 0).all() and (rgba.alpha[10:] == 200).all()
    assert json.loads(f1["deep-000.json"])["bit_depth"] == 16
    mask = read_image(out1 / "colour-000.mask.png").pixels
    assert mask.ndim == 2 and set(np.unique(mask)) <= {0, 255}
    # the JSON record replays the degraded bytes
    from degrade import replay

    src = read_image(inputs / "colour.png").pixels
    again, _ = replay(src, meta["params"] if meta["variant"] == 0 else json.loads(f1["colour-000.json"])["params"])
    assert np.array_equal(again, read_image(out1 / "colour-000.png").pixels)
    # so does the whole file, as written
    again, _ = replay(src, json.loads(f1["colour-001.json"]))
    assert np.array_equal(again, read_image(out1 / "colour-001.png").pixels)


def test_seed_changes_output(capsys, tmp_path, inputs):
    run(capsys, "degrade", inputs / "colour.png", "--seed", "1", "--out", tmp_path / "a")
    run(capsys, "degrade", inputs / "colour.png", "--seed", "2", "--out", tmp_path / "b")
    assert (tmp_path / "a" / "colour-000.png").read_bytes() != (tmp_path / "b" / "colour-000.png").read_bytes()


def test_degrade_real_old_photo(capsys, tmp_path):
    p = real_photo_paths()[0]
    r = run(capsys, "degrade", p, "--recipe", "bopbtl", "--out", tmp_path)
    assert r.code == 0
    assert read_image(tmp_path / f"{p.stem}-000.png").pixels.shape == read_image(p).pixels.shape


@pytest.mark.parametrize(
    "setup, args, message",
    [
        ("truncated", [], "cannot decode image"),
        ("text", [], "not a recognised image format"),
        ("missing", [], "no such file"),
        (None, ["--recipe", "nope"], "unknown recipe 'nope'"),
        (None, ["--recipe", "BADFILE"], "steps[0].quality: 0 is outside [1, 100]"),
        (None, ["--count", "0"], "Invalid value for '--count'"),
    ],
)
def test_bad_inputs_one_line_nonzero_nothing_partial(capsys, tmp_path, inputs, setup, args, message):
    targets = [inputs / "colour.png"]
    if setup == "truncated":
        data = (inputs / "colour.png").read_bytes()
        (tmp_path / "trunc.png").write_bytes(data[: len(data) // 3])
        targets.append(tmp_path / "trunc.png")
    elif setup == "text":
        (tmp_path / "notes.jpg").write_text("hello")
        targets.append(tmp_path / "notes.jpg")
    elif setup == "missing":
        targets.append(tmp_path / "missing.png")
    args = [a.replace("BADFILE", str(tmp_path / "bad.yaml")) for a in args]
    (tmp_path / "bad.yaml").write_text("steps: [{op: jpeg, quality: 0}]\n")
    out = tmp_path / "out"
    r = run(capsys, "degrade", *targets, "--out", out, *args)
    assert one_line_error(r), r
    assert message in r.err
    if setup is not None:  # the good input was still processed, the bad one left nothing
        assert (out / "colour-000.png").exists()
        bad_stem = targets[-1].stem
        assert not any(p.name.startswith(bad_stem) for p in out.iterdir())
        assert not any(p.name.endswith(".tmp") for p in out.iterdir())


def test_a_misspelt_builtin_input_names_the_builtins(capsys, tmp_path):
    """`builtin:Real` or `builtin:sample` said only 'no such file', as if it were a path."""
    r = run(capsys, "degrade", "builtin:Real", "--out", tmp_path / "o")
    assert r.code == 1 and "builtin:Real: no such file (the built-in inputs are builtin:samples and builtin:real)" in r.err, r.err


def test_no_traceback_end_to_end(tmp_path):
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    r = run_subprocess("degrade", tmp_path / "x.png", "--out", tmp_path / "o")
    assert r.code != 0 and "Traceback" not in r.err and "cannot decode" in r.err
    assert r.out == "" and not (tmp_path / "o").exists()  # no "wrote 0 degraded images to o" for a folder never made


def test_same_stem_inputs_are_refused(capsys, tmp_path, photo):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "x.png").write_bytes(encode_png(photo))
    r = run(capsys, "degrade", tmp_path / "a" / "x.png", tmp_path / "b" / "x.png", "--out", tmp_path / "o")
    assert one_line_error(r) and "would write the same outputs" in r.err
    (tmp_path / "b" / "X.png").write_bytes(encode_png(photo))  # one file where the output folder ignores case
    r = run(capsys, "degrade", tmp_path / "a" / "x.png", tmp_path / "b" / "X.png", "--out", tmp_path / "o")
    assert one_line_error(r) and "would write the same outputs (named X)" in r.err and not (tmp_path / "o").exists()


def test_an_input_named_twice_is_processed_once(capsys, tmp_path, photo, monkeypatch):
    """``x.png x.png``, ``d d/x.png`` or a relative and an absolute spelling: one file, one input. Each
    was a second input: its outputs overwrote the first's (``wrote 2`` for one triplet) or, with another
    spelling, the run was refused as two inputs with the same name."""
    d = tmp_path / "d"
    d.mkdir()
    (d / "x.png").write_bytes(encode_png(photo))
    monkeypatch.chdir(tmp_path)
    for args in (["d/x.png", "d/x.png"], ["d", "d/x.png"], ["d/x.png", d / "x.png"], ["d/x.png", "d/*.png"]):
        r = run(capsys, "degrade", *args, "--out", tmp_path / "o", "--recipe", "mild")
        assert r.code == 0 and "wrote 1 degraded image" in r.out, (args, r.out, r.err)
        assert json.loads((tmp_path / "o" / "x-000.json").read_text())["index"] == 0, args


def test_outputs_never_overwrite_inputs(capsys, tmp_path, photo):
    d = tmp_path / "d"
    d.mkdir()
    for name in ("x.png", "x-000.png"):
        (d / name).write_bytes(encode_png(photo))
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    r = run(capsys, "degrade", d / "x.png", d / "x-000.png", "--out", d, "--recipe", "mild")
    assert one_line_error(r) and "would overwrite the input" in r.err
    r = run(capsys, "degrade", d, "--out", tmp_path / "o", "--recipe", "mild", "--sheet", d / "x.png")
    assert one_line_error(r) and "--sheet" in r.err
    r = run(capsys, "degrade", d, "--out", tmp_path / "o", "--recipe", "mild", "--sheet", tmp_path / "o" / "x-000.png")
    assert one_line_error(r) and "is one of this run's own outputs" in r.err
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before and not (tmp_path / "o").exists()


@pytest.mark.parametrize("args", [["restore", "--tile", "abc", "x.png", "-o", "o"], ["dataset", "create"],
                                  ["degrade", "x.png", "--count", "0", "-o", "o"], ["dataset", "nope"]])  # fmt: skip
def test_usage_errors_are_one_line(tmp_path, args):
    r = run_subprocess(*args)
    lines = r.err.strip().splitlines()
    assert r.code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "--help" in lines[0], r.err


def test_write_errors_name_the_file_asked_for(tmp_path, monkeypatch):
    import tempfile

    from degrade.io import atomic_write_bytes

    def refuse(**kw):
        raise PermissionError(13, "Permission denied", str(tmp_path / ".x1y2.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError) as e:
        atomic_write_bytes(tmp_path / "sheet.png", b"x")
    assert e.value.filename == str(tmp_path / "sheet.png") and e.value.strerror == "Permission denied"


def test_an_input_in_a_folder_that_cannot_be_searched_costs_only_itself(capsys, tmp_path, photo, monkeypatch):
    """``locked/x.png`` where ``locked`` is mode 000 (for a user other than root): even asking whether it
    exists fails. That PermissionError escaped while the inputs were listed and stopped the whole run."""
    import pathlib

    (tmp_path / "good.png").write_bytes(encode_png(photo))
    (tmp_path / "locked").mkdir()
    locked = tmp_path / "locked" / "x.png"
    locked.write_bytes(encode_png(photo))
    stat = os.stat

    def searchless(path, *a, **kw):  # what stat says below a folder without search permission (root is never told)
        if pathlib.Path(os.fsdecode(path)).parent.name == "locked":
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return stat(path, *a, **kw)

    monkeypatch.setattr(os, "stat", searchless)  # pathlib's stat and degrade.filekind's both go through it
    r = run(capsys, "degrade", tmp_path / "good.png", locked, "--out", tmp_path / "o", "--recipe", "mild")
    assert r.code != 0 and "Traceback" not in r.err and "internal" not in r.err
    assert f"{locked}: cannot read (Permission denied)" in r.err
    assert (tmp_path / "o" / "good-000.png").exists()


@pytest.mark.parametrize("command", ["degrade", "restore"])
def test_an_unreadable_input_named_on_the_command_line_costs_only_itself(capsys, tmp_path, photo, monkeypatch, command):
    """A photo without read permission (for a user other than root) named as an argument was a usage error that
    stopped every other input (exit status 2), where the same photo in a folder was one failed input."""
    import degrade.io

    (tmp_path / "good.png").write_bytes(encode_png(photo[:64, :64]))
    (tmp_path / "locked.png").write_bytes(encode_png(photo[:64, :64]))
    access = os.access

    def no_read(path, *a, **kw):  # what os.access and open say of a mode-000 file (root is never told)
        if str(path).endswith("locked.png"):
            raise PermissionError(13, "Permission denied", str(path))
        return open(path, *a, **kw)

    monkeypatch.setattr(os, "access", lambda p, m, *a, **kw: not str(p).endswith("locked.png") and access(p, m, *a, **kw))
    monkeypatch.setattr(degrade.io, "open", no_read, raising=False)
    extra = ["--recipe", "mild"] if command == "degrade" else ["--scratches", "none"]
    r = run(capsys, command, tmp_path / "good.png", tmp_path / "locked.png", "--out", tmp_path / "o", *extra)
    assert r.code == 1 and one_line_error(r) and f"error: {tmp_path / 'locked.png'}: cannot read (Permission denied)" in r.err, r.err
    assert "1 of 2 inputs failed" in r.err and (tmp_path / "o" / ("good-000.png" if command == "degrade" else "good.png")).exists()


def test_long_names_and_unwritable_outputs_cost_only_their_input(capsys, tmp_path, photo):
    d = tmp_path / "in"
    d.mkdir()
    for name in ("a" * 240, "b" * 250, "short"):  # a's outputs are legal names; b's are too long for the filesystem
        (d / f"{name}.png").write_bytes(encode_png(photo))
    r = run(capsys, "degrade", d, "--out", tmp_path / "o", "--recipe", "mild")
    assert r.code != 0 and "File name too long" in r.err and "internal" not in r.err
    names = {p.name for p in (tmp_path / "o").iterdir()}
    assert f"{'a' * 240}-000.png" in names and "short-000.png" in names and not any(n.startswith(".") for n in names)
    # the progress bar still counts every variant of the input whose outputs failed
    from degrade import load_recipe
    from degrade.batch import degrade_files

    ticks = []
    paths = sorted(d.iterdir())
    report = degrade_files(paths, load_recipe("mild"), 0, tmp_path / "o2", count=3, on_progress=lambda: ticks.append(1))
    assert len(report.failed) == 1 and len(ticks) == 3 * len(paths)


def test_builtin_samples_source(capsys, tmp_path):
    r = run(capsys, "degrade", "builtin:real", "--recipe", "mild", "--out", tmp_path)
    assert r.code == 0 and len(list(tmp_path.glob("*.mask.png"))) == len(real_photo_paths())


def test_degrade_replaces_only_its_own_outputs(capsys, tmp_path, photo):
    """Outputs are NAME-KKK.png/.mask.png/.json: a user's file of such a name is refused, not replaced,
    unless --overwrite; daguerre's own (a re-run into the same folder) are replaced."""
    (tmp_path / "x.png").write_bytes(encode_png(photo))
    out = tmp_path / "o"
    r = run(capsys, "degrade", tmp_path / "x.png", "--out", out, "--recipe", "mild")
    assert r.code == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    r = run(capsys, "degrade", tmp_path / "x.png", "--out", out, "--recipe", "mild")  # a re-run: byte-identical again
    assert r.code == 0 and {p.name: p.read_bytes() for p in out.iterdir()} == first
    for name, foreign in (("x-000.json", b'{"notes": "mine"}\n'), ("x-000.mask.png", encode_png(photo[..., 0]))):
        (out / name).write_bytes(foreign)
        r = run(capsys, "degrade", tmp_path / "x.png", "--out", out, "--recipe", "mild")
        assert one_line_error(r) and f"{name} exists and was not written by daguerre" in r.err
        assert (out / name).read_bytes() == foreign
        r = run(capsys, "degrade", tmp_path / "x.png", "--out", out, "--recipe", "mild", "--overwrite")
        assert r.code == 0 and {p.name: p.read_bytes() for p in out.iterdir()} == first


def test_a_subfolder_that_cannot_be_listed_is_reported_not_skipped_silently(capsys, tmp_path, photo, monkeypatch):
    """``rglob`` skipped a subfolder without read permission without a word: its photos were simply not
    processed and the run said nothing. Now it is a failed input, and a dataset source lists it as skipped."""
    import os

    from degrade.errors import DaguerreError
    from pipelines.sources import scan_source

    src = tmp_path / "album"
    (src / "locked").mkdir(parents=True)
    (src / "a.png").write_bytes(encode_png(photo))
    (src / "locked" / "b.png").write_bytes(encode_png(photo))
    real = os.scandir

    def denied(path="."):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", denied)
    r = run(capsys, "degrade", src, "--out", tmp_path / "o", "--recipe", "mild")
    assert one_line_error(r) and f"{src / 'locked'}: cannot list this folder (Permission denied)" in r.err
    assert "1 of 2 inputs failed" in r.err and (tmp_path / "o" / "a-000.png").exists()
    source = scan_source(str(src), workers=1)
    assert [f.name for f in source.files] == ["a.png"]
    assert [s["reason"] for s in source.skipped] == [f"{src / 'locked'}: cannot list this folder (Permission denied)"]
    with pytest.raises(DaguerreError, match="unreadable source image"):
        scan_source(str(src), workers=1, strict=True)


def test_a_fifo_in_an_input_folder_is_a_failed_input_not_skipped_silently(capsys, tmp_path, photo):
    """`degrade album/` and `restore album/` left a FIFO or a link to /dev/zero there out without a word and exited 0."""
    src = tmp_path / "album"
    src.mkdir()
    (src / "a.png").write_bytes(encode_png(photo[:64, :64]))
    os.mkfifo(src / "b.png")
    (src / "c.png").symlink_to("/dev/zero")
    for cmd in (["degrade", src, "--recipe", "mild"], ["restore", src, "--scratches", "none"]):
        r = run(capsys, *cmd, "--out", tmp_path / cmd[0])
        assert one_line_error(r) and "2 of 3 inputs failed" in r.err, r.err
        for name in ("b.png", "c.png"):
            assert f"error: {src / name}: not a regular file (a pipe, socket or device), not an image" in r.err.splitlines()


def test_an_option_has_the_same_short_flag_in_every_command():
    """`degrade --seed` was `-s` but `dataset create --seed` had none; `bench --out` was `-o`, `train --out`
    had none. Walk every command and subcommand: one long option, one short flag (or none anywhere)."""
    import click

    import cli

    shorts: dict[str, set] = {}

    def walk(cmd, ctx):
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), ctx)
            return
        own = [o for p in cmd.params if isinstance(p, click.Option) for o in p.opts + p.secondary_opts if not o.startswith("--")]
        assert len(own) == len(set(own)), (cmd.name, own)  # one short flag, one option, within a command
        for p in cmd.params:
            if isinstance(p, click.Option):
                for long in (o for o in p.opts if o.startswith("--")):
                    shorts.setdefault(long, set()).add(next((o for o in p.opts if not o.startswith("--")), None))

    walk(cli.cli, click.Context(cli.cli))
    mixed = {k: v for k, v in shorts.items() if len(v) > 1}
    assert not mixed, mixed
    assert shorts["--seed"] == {"-s"} and shorts["--out"] == {"-o"}


@pytest.mark.parametrize("group", [[], ["dataset"], ["zoo"]])
def test_a_bare_group_prints_its_help_not_an_error_around_it(capsys, group):
    """`daguerre dataset` printed `error: Usage: …` with ` (see 'daguerre dataset --help')` glued to its last command."""
    r = run(capsys, *group)
    assert r.code == 2 and r.out == ""
    assert r.err.startswith(f"Usage: {' '.join(['daguerre', *group])} [OPTIONS] COMMAND")
    assert "error:" not in r.err and "(see '" not in r.err


def test_a_usage_error_is_one_line(capsys):
    """A missing choice argument (`daguerre train`) took five lines: click lists the choices one a line."""
    r = run(capsys, "train")
    assert r.code == 2 and r.out == ""
    assert r.err.strip() == ("error: Missing argument '{vae1|vae2|mapping|scratch}'. Choose from: vae1, vae2, mapping, scratch "
                             "(see 'daguerre train --help')")


@pytest.mark.parametrize("args", [["bench"], ["bench", "--methods", "identity"], ["dataset", "verify"], ["dataset", "verify", "x", "--all"],
                                  ["zoo", "bundle", "x"], ["dataset", "show", "x"]])
def test_a_missing_or_conflicting_argument_is_a_usage_error_exit_status_2(capsys, args):
    """`bench` without --dataset and `dataset verify` without REF or --all exited 1, where click's own missing
    arguments and `zoo bundle`'s missing parts exit 2 with the --help hint (README: exit status)."""
    r = run(capsys, *args)
    assert r.code == 2 and one_line_error(r) and len(r.err.strip().splitlines()) == 1, r.err
    assert f"(see 'daguerre {' '.join(a for a in args if a in ('bench', 'dataset', 'verify', 'zoo', 'bundle', 'show'))} --help')" in r.err


def test_every_option_has_help():
    """`--workers` means dask workers, benchmark processes or concurrent restorations depending on the command,
    and `bench --workers`, `serve --model`, `restore --device`, `zoo bundle --vae1`… had no help line."""
    import click

    import cli

    bare = []

    def walk(cmd, path, ctx):
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), [*path, name], ctx)
        bare.extend(f"{' '.join(path)} {p.opts[0]}" for p in cmd.params if isinstance(p, click.Option) and not (p.help or "").strip())

    walk(cli.cli, ["daguerre"], click.Context(cli.cli))
    assert not bare, bare


def test_every_command_help_starts_with_what_it_does():
    """`zoo ls` said "Registered checkpoints: …", `dataset info` "Lineage, …", `demo` "The main job …": each
    command's help now opens with its verb, like `degrade` and `dataset create` (a new command adds its verb here)."""
    import click

    import cli

    verbs = {"Benchmark", "Calibrate", "Compare", "Degrade", "Generate", "List", "Point", "Print", "Recompute", "Regenerate",
             "Remove", "Restore", "Run", "Serve", "Show", "Tie", "Train", "Validate", "Write"}
    first = {}

    def walk(cmd, path, ctx):
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), [*path, name], ctx)
        if not isinstance(cmd, click.Group) or cmd.invoke_without_command:
            first[" ".join(path)] = (cmd.help or "").split()[:1]

    walk(cli.cli, [], click.Context(cli.cli))
    assert {k: v for k, v in first.items() if not v or v[0] not in verbs} == {}


@pytest.mark.parametrize("args", [["degrade", "", "-o", "o"], ["degrade", "builtin:samples", "-o", ""],
                                  ["degrade", "builtin:samples", "-o", "o", "--sheet", ""], ["restore", "", "-o", "o"],
                                  ["restore", "builtin:real", "-o", ""], ["dataset", "export", "x", "-o", ""],
                                  ["dataset", "create", "x", "--source", "builtin:real", "-n", "2", "--store", ""],
                                  ["bench", "-d", "x", "-o", ""], ["train", "scratch", "--pairs", "x", "-o", ""], ["demo", "-o", ""]])
def test_an_empty_path_is_refused_not_taken_for_the_current_folder(capsys, tmp_path, monkeypatch, args):
    """`--out ""` (an unset shell variable) wrote into the current folder and an empty input degraded every image
    under it; `--sheet ""` was ignored. Empty text is refused elsewhere (`--source`, `--recipe`, a dataset reference)."""
    monkeypatch.chdir(tmp_path)
    r = run(capsys, *args)
    assert r.code == 2 and one_line_error(r) and "empty" in r.err, r.err
    assert list(tmp_path.iterdir()) == []


def test_a_folder_named_in_another_encoding_prints_under_a_strict_utf8_stdout(tmp_path, photo):
    """A UTF-8 locale (en_US.UTF-8) gives Python a strict stdout: printing an --out whose name is not UTF-8
    failed with 'internal UnicodeEncodeError' after the images were written; the name prints as its bytes."""
    import os
    import subprocess
    import sys

    (tmp_path / "x.png").write_bytes(encode_png(photo))
    out = os.fsencode(tmp_path) + b"/\xe9t\xe9"
    p = subprocess.run([sys.executable, "-c", "import cli; cli.main()", "degrade", tmp_path / "x.png", "--out", out],
                       capture_output=True, env={**os.environ, "PYTHONIOENCODING": "utf-8"}, timeout=120)  # fmt: skip
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    assert p.stdout.startswith(b"wrote 1 degraded images to ") and b"/\xe9t\xe9" in p.stdout
    assert os.path.exists(out + b"/x-000.png")


def test_a_closed_stderr_does_not_stop_the_work(tmp_path, photo):
    """Run with stderr closed (``2>&-``, some service managers), Python's sys.stderr is None: every command with
    a progress bar failed at its start, silently, with exit status 1."""
    import os
    import subprocess
    import sys

    (tmp_path / "x.png").write_bytes(encode_png(photo))
    p = subprocess.run([sys.executable, "-c", "import cli; cli.main()", "degrade", tmp_path / "x.png", "--out", tmp_path / "o"],
                       stdout=subprocess.PIPE, preexec_fn=lambda: os.close(2), timeout=120)  # fmt: skip
    assert p.returncode == 0 and p.stdout.startswith(b"wrote 1 degraded images")
    assert (tmp_path / "o" / "x-000.png").exists()


def test_a_stdout_in_another_encoding_prints_what_it_cannot_show_as_a_question_mark(tmp_path):
    """Under an ISO-8859-1 locale stdout is Latin-1: the '…' of 'no datasets yet' (and bench's '–') failed with
    'internal UnicodeEncodeError'."""
    r = run_subprocess("dataset", "ls", env={"PYTHONIOENCODING": "latin-1", "DAGUERRE_HOME": str(tmp_path / "h")})
    assert r.code == 0 and r.out.startswith("no datasets yet") and not r.err, r.err


def test_version_is_printed_installed_or_not(capsys, monkeypatch):
    """From a source tree never installed, click's --version raised an internal RuntimeError."""
    from importlib import metadata

    from pipelines.layout import code_version

    r = run(capsys, "--version")
    assert r.code == 0 and r.out.strip() == f"daguerre, version {code_version()}"

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    r = run(capsys, "--version")
    assert r.code == 0 and r.out.strip() == "daguerre, version 0+unknown", r.err


def test_degrade_count_is_bounded_before_any_planning(capsys, tmp_path):
    """--count 1000000000 planned 3·10⁹ output paths (1.4 GB and growing) before any work."""
    r = run(capsys, "degrade", "builtin:samples", "--recipe", "mild", "--count", "1000000000", "--out", str(tmp_path / "d"))
    assert r.code == 2 and "1000000000 is not in the range 1<=x<=100000" in r.err and "\n" not in r.err.strip()
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("kind", ["dataset info", "restore", "degrade", "degrade esc"])
def test_a_name_with_control_characters_is_escaped_in_one_line_errors(tmp_path, home, kind):
    """A path may hold a newline, tab or ESC (legal on Linux): printed as they are, they split an error over lines
    (`no dataset at 0` and a blank line) and an ESC drives the terminal; they are escaped as ``repr`` escapes them."""
    name = {"dataset info": "0\n/x", "restore": "x\ny.jpg", "degrade": "bad\tname.png", "degrade esc": "bad\x1b[2Jname.png"}[kind]
    path = tmp_path / name
    if kind == "degrade esc":
        path.write_bytes(b"not an image")
    args = {"dataset info": ("dataset", "info", path), "restore": ("restore", path, "--out", tmp_path / "o")}.get(
        kind, ("degrade", path, "--out", tmp_path / "o"))
    r = run_subprocess(*args, env={"DAGUERRE_HOME": str(home)})
    shown = str(path).encode("unicode_escape").decode()  # \n, \t, \x1b
    lines = r.err.splitlines()
    assert r.code == 1 and lines and all(line.startswith("error: ") for line in lines), r.err
    assert shown in lines[0] and "\x1b" not in r.err and "\t" not in r.err, r.err
    assert len(lines) == (1 if kind == "dataset info" else 2), r.err  # restore and degrade: the input's line and the count


def test_one_line_keeps_ordinary_unicode():
    """Only control characters and line breaks are escaped: accented letters, CJK and emoji print as they are."""
    import cli

    assert cli._one_line("café 写真 📷 a\nb\r\x85\u2028\x7f") == "café 写真 📷 a\\nb\\r\\x85\\u2028\\x7f"
