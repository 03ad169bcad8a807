"""The ``daguerre`` command line: parse, call a library function, print.

Library modules are imported inside each command so that ``daguerre --help`` stays fast and
never imports torch.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys

import click


def _echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False, default=str))


def _console(**kwargs):
    """A rich Console that leaves a closed pipe to :func:`main` (rich's own handling ends with status 1)."""
    from rich.console import Console

    class Quiet(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

    return Quiet(**kwargs)


class _Path(click.Path):
    """A ``click.Path`` that refuses empty text (an unset shell variable), which meant the current folder."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("empty (an unset shell variable?)", param, ctx)
        return super().convert(value, param, ctx)


class _OldSpelling(click.Option):
    """An option whose last spelling (``--n`` of the sample counts, now ``--count``/``-n`` as in ``degrade``) still
    works for old scripts but shows in no help or message."""

    def _shown(self, method, ctx):
        opts, self.opts = self.opts, self.opts[:-1]
        try:
            return method(ctx)
        finally:
            self.opts = opts

    def get_help_record(self, ctx):
        return self._shown(super().get_help_record, ctx)

    def get_error_hint(self, ctx):
        return self._shown(super().get_error_hint, ctx)


_json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
_model_option = click.option("--model", "-m", default="default", show_default=True, help="Bundle name (zoo ls) or path.")
_device_option = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                              help="Where the networks run; auto: cuda if a GPU is available, else cpu.")


def _pair_command(group: click.Group, name: str, target: str):
    """Declare ``NAME A B [--json]`` on ``group``: ``target`` ("module:function", imported on use) computes
    the comparison, printed as JSON or by the decorated function (whose docstring is the help)."""

    def wrap(printer):
        @group.command(name, help=printer.__doc__)
        @click.argument("a")
        @click.argument("b")
        @_json_option
        def command(a: str, b: str, as_json: bool) -> None:
            import importlib

            module, func = target.split(":")
            d = getattr(importlib.import_module(module), func)(a, b)
            _echo_json(d) if as_json else printer(d)

        return command

    return wrap


def _rm_command(group: click.Group, argument: str, force_help: str):
    """Declare ``rm ARGUMENT [--force] [--json]`` on ``group`` (datasets and models remove alike)."""

    def wrap(f):
        return group.command("rm")(click.argument(argument)(click.option("--force", is_flag=True, help=force_help)(_json_option(f))))

    return wrap


def _made_from_notes(dependants: list[str]) -> list[str]:
    """What an rm --force says of the datasets or models still recorded as made from what it removed."""
    return [f"still recorded as made from it: {', '.join(dependants)}"] if dependants else []


class _Progress:
    """A rich progress bar (count, rate, ETA) on a terminal; silent in CI, pipes and logs.

    Used as a context manager that yields itself: call it to advance by ``n`` (1); ``start(total, done)``
    resets it.
    """

    def __init__(self, total: int, description: str, unit: str = "items") -> None:
        self.total, self.description, self.unit = total, description, unit
        self.enabled = sys.stderr is not None and sys.stderr.isatty() and not os.environ.get("CI")  # None: fd 2 closed
        self.bar = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                transient=True,
            )
            self.bar.__enter__()
            self.task = self.bar.add_task(self.description, total=self.total, rate="")
        return self

    def start(self, total: int, done: int = 0) -> None:
        if self.bar is not None:
            self.bar.reset(self.task, total=total, completed=done)

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, n)
            speed = self.bar.tasks[0].speed
            self.bar.update(self.task, rate=f"{speed:7.1f} {self.unit}/s" if speed else "")

    __call__ = advance

    def __exit__(self, *exc):
        if self.bar is not None:
            return self.bar.__exit__(*exc)
        return False


def _progress(total: int, description: str, unit: str = "items") -> _Progress:
    return _Progress(total, description, unit)


class _Group(click.Group):
    """A command group that also answers to ``list`` for ``ls`` and ``inspect`` for ``info`` (the names
    the design card uses), showing them as ``ls (list)``; subgroups made with ``@group.group()`` inherit it."""

    ALIASES = {"list": "ls", "inspect": "info"}

    def get_command(self, ctx, name):
        if name not in self.commands and name in self.ALIASES:
            name = self.ALIASES[name]
        return super().get_command(ctx, name)

    def resolve_command(self, ctx, args):
        _, cmd, rest = super().resolve_command(ctx, args)
        return (cmd.name if cmd else None), cmd, rest

    def make_context(self, *args, **kwargs):  # the root's parses the options and prints --help and --version
        with _stopping():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx):
        with _stopping():
            return super().invoke(ctx)

    def format_commands(self, ctx, formatter):
        names = {v: k for k, v in self.ALIASES.items()}
        cmds = [(sub, c) for sub in self.list_commands(ctx) if (c := self.get_command(ctx, sub)) and not c.hidden]
        labels = [f"{sub} ({names[sub]})" if sub in names and names[sub] not in self.commands else sub for sub, _ in cmds]
        if cmds:
            limit = formatter.width - 6 - max(map(len, labels))
            with formatter.section("Commands"):
                formatter.write_dl([(label, c.get_short_help_str(limit)) for label, (_, c) in zip(labels, cmds)])


_Group.group_class = type  # subgroups are _Group too


def _show_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """``--version``: the installed package's version, or 0+unknown from a source tree that was never installed
    (what datasets record then too; click's own option raised an internal RuntimeError there)."""
    if not value or ctx.resilient_parsing:
        return
    from importlib import metadata

    try:
        version = metadata.version("daguerre")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    click.echo(f"daguerre, version {version}")
    ctx.exit()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_show_version, help="Show the version and exit.")
def cli() -> None:
    """daguerre: degrade, version and restore old photographs."""


# -- ops ---------------------------------------------------------------------------------------
@cli.group()
def ops() -> None:
    """Degradation operators."""


@ops.command("ls")
@_json_option
def ops_ls(as_json: bool) -> None:
    """List operators: name, kind, parameters with their ranges."""
    from degrade.describe import operator_info, operators_table

    if as_json:
        from degrade import list_operators

        _echo_json([operator_info(c) for c in list_operators()])
    else:
        _console().print(operators_table())


@ops.command("show")
@click.argument("name")
@_json_option
def ops_show(name: str, as_json: bool) -> None:
    """Show one operator: description, parameters, defaults and example."""
    from degrade import get_operator
    from degrade.describe import operator_info, operator_text

    cls = get_operator(name)
    if as_json:
        _echo_json(operator_info(cls))
    else:
        click.echo(operator_text(cls))


# -- recipes -----------------------------------------------------------------------------------
@cli.group()
def recipes() -> None:
    """Recipes: combinator trees of operators."""


@recipes.command("ls")
@_json_option
def recipes_ls(as_json: bool) -> None:
    """List the built-in recipes with their hashes."""
    from degrade import builtin_recipes, load_recipe

    rows = []
    for name in builtin_recipes():
        r = load_recipe(name)
        rows.append({"name": name, "hash": r.hash, "operators": len(r.operators()), "description": r.description})
    if as_json:
        _echo_json(rows)
        return
    for row in rows:
        first = row["description"].split(". ")[0].split(" (")[0].split(":")[0].rstrip(".")
        click.echo(f"{row['name']:<10} {row['hash'][:12]}  {row['operators']:>2} ops  {first[:80]}")


@recipes.command("show")
@click.argument("recipe")
@click.option("--json", "as_json", is_flag=True, help="Canonical JSON instead of YAML.")
def recipes_show(recipe: str, as_json: bool) -> None:
    """Print a recipe (built-in name or file) in canonical form with its hash."""
    from degrade import load_recipe

    r = load_recipe(recipe)
    if as_json:
        click.echo(json.dumps({**r.canonical(), "recipe_hash": r.hash}, indent=2))
    else:
        click.echo(f"# recipe_hash: {r.hash}")
        click.echo(r.to_yaml(), nl=False)


@recipes.command("validate")
@click.argument("files", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output: every file's result (ok, name, hash or the error).")
def recipes_validate(files: tuple[str, ...], as_json: bool) -> None:
    """Validate recipe files; exits non-zero on the first invalid one (with --json, after checking them all)."""
    from degrade import DaguerreError, load_recipe

    if not as_json:
        for f in files:
            r = load_recipe(f)
            click.echo(f"{f}: ok ({len(r.operators())} operators, hash {r.hash[:12]})")
        return
    rows = []
    for f in files:
        try:
            r = load_recipe(f)
            rows.append({"file": f, "ok": True, "name": r.name, "hash": r.hash, "operators": len(r.operators())})
        except DaguerreError as e:
            rows.append({"file": f, "ok": False, "error": str(e)})
    _echo_json(rows)
    bad = [row for row in rows if not row["ok"]]
    if bad:
        raise SystemExit(f"error: {len(bad)} of {len(rows)} recipes invalid: {bad[0]['file']}: {bad[0]['error']}")


# -- degrade -----------------------------------------------------------------------------------
@cli.command("degrade")
@click.argument("images", nargs=-1, required=True, type=_Path(readable=False))  # an unreadable one: a failed input
@click.option("--recipe", "-r", default="old-photo", show_default=True, help="Built-in recipe name or a YAML/JSON file.")
@click.option("--seed", "-s", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the recipe's sampling.")
@click.option("--out", "-o", type=_Path(file_okay=False), required=True, help="Output folder.")
@click.option("--count", "-n", type=click.IntRange(1, 100_000), default=1, show_default=True,
              help="Variants per input (at most 100,000: for more, build a dataset with `dataset create`).")
@click.option("--sheet", type=_Path(dir_okay=False), help="Also write a contact sheet (.png, .jpg or .webp) of the results.")
@click.option("--overwrite", is_flag=True, help="Replace files in the outputs' places that daguerre did not write (refused otherwise).")
def degrade_cmd(images: tuple[str, ...], recipe: str, seed: int, out: str, count: int, sheet: str | None, overwrite: bool) -> None:
    """Degrade IMAGES (files, folders, globs, builtin:samples, builtin:real) with a recipe.

    Writes NAME-KKK.png (degraded), NAME-KKK.mask.png (defects) and NAME-KKK.json (params
    record) per input and variant. The same command gives byte-identical files. Folders and
    globs skip what lies in an --out inside them; one that matches nothing, or a folder in one that cannot be listed, counts as a failed input.
    """
    from pathlib import Path

    from degrade import DaguerreError, load_recipe
    from degrade.batch import check_not_among, check_not_foreign, check_outputs, degrade_files, planned_outputs, preview_sheet, resolve_inputs
    from degrade.sheet import check_sheet_path, save_sheet

    r = load_recipe(recipe)
    unlisted: list[tuple[str, str]] = []
    paths = resolve_inputs(images, Path(out), unlisted)
    if not paths:
        raise DaguerreError(f"no images found in {' '.join(images)}")
    if sheet:
        check_sheet_path(sheet)
        check_outputs(paths, [[sheet]], "--sheet")  # checked against every input
        check_not_among(sheet, planned_outputs(paths, Path(out), count), "--sheet")  # and against every output
        if not overwrite:  # then a file of the user's there
            check_not_foreign([[Path(sheet)]], "--sheet")
    with _progress(len(paths) * count, "degrading", "images") as tick:
        report = degrade_files(paths, r, seed, Path(out), count, on_progress=tick, keep_previews=24 if sheet else 0, overwrite=overwrite)
    report.failed += unlisted
    if sheet and report.previews:
        save_sheet(preview_sheet(report, title=f"recipe {r.name or recipe} ({r.hash[:12]}), seed {seed}"), sheet)
    if report.written or not report.failed:  # nothing written and only failures: the errors alone (o/ was never made)
        click.echo(f"wrote {len(report.written)} degraded images to {out}" + (f", sheet {sheet}" if sheet else ""))
    if report.failed:
        for path, reason in report.failed:
            click.echo(f"error: {_one_line(reason)}", err=True)
        raise SystemExit(f"error: {len(report.failed)} of {len(paths) + len(unlisted)} inputs failed")


# -- datasets ----------------------------------------------------------------------------------
@cli.group()
def dataset() -> None:
    """Versioned datasets: sharded zarr v3 stores of (clean, degraded, mask, params) samples."""


@dataset.command("create")
@click.argument("name")
@click.option("--recipe", "-r", help="Built-in recipe or YAML/JSON file [old-photo; none with --real].")
@click.option("--source", required=True, help="Folder, glob, builtin:samples, builtin:real or dataset:NAME[@V].")
@click.option("--count", "-n", type=click.IntRange(min=1), required=True, help="Number of samples.")
@click.option("--size", type=click.IntRange(8, 4096), default=256, show_default=True, help="Tile side in pixels.")  # pipelines.layout.MAX_SIZE
@click.option("--seed", "-s", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the crops and the recipe's sampling.")
@click.option("--shard-size", type=click.IntRange(min=1), default=64, show_default=True, help="Samples per zarr shard.")
@click.option("--workers", "-w", type=click.IntRange(min=1), default=os.cpu_count() or 2, show_default="CPU count", help="Dask workers (see --scheduler).")
@click.option("--scheduler", type=click.Choice(["processes", "threads"]), default="processes", show_default=True,
              help="processes measured faster than threads on this project's degradations (docs/benchmarks.md).")
@click.option("--address", help="tcp://HOST:PORT of a dask.distributed scheduler (store on a shared path).")
@click.option("--real", is_flag=True, help="Real old photos (domain R): crops go to `degraded`, no recipe.")
@click.option("--store", type=_Path(), help="Write to this path instead of $DAGUERRE_HOME/datasets/NAME/vN.zarr.")
@click.option("--strict", is_flag=True, help="Fail on any unreadable source image instead of skipping it.")
@click.option("--zstd-level", type=click.IntRange(-131072, 22), default=-1, show_default=True,  # pipelines.shards.ZSTD_LEVELS
              help="zstd level of the chunks (-131072 fastest … 22 smallest; docs/datasets.md).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output: the version made or reused (warnings stay on stderr).")
def dataset_create(name, recipe, source, count, size, seed, shard_size, workers, scheduler, address, real, store, strict, zstd_level, as_json):
    """Generate dataset NAME from a recipe and a source; re-run the same command to resume. A version of NAME with
    the same lineage is reused where it is, at its zstd level: a --store or --zstd-level it lacks is not applied (a warning
    says so)."""
    from pipelines import build_spec, create_dataset

    if real and recipe is not None:
        raise click.UsageError("--recipe does not apply to --real datasets (real photos are cropped, not degraded)")
    spec = build_spec(name, source, count, size, seed, recipe, shard_size, real, strict, zstd_level)
    for s in spec.source.skipped:  # one line each, whatever the file is called
        click.echo(_one_line(f"warning: skipped {s['reason']}"), err=True)
    with _progress(count, f"generating {name}", "samples") as advance:
        res = create_dataset(spec, store, workers, scheduler, address, on_start=advance.start, on_shard=advance)
    if click.get_current_context().get_parameter_source("zstd_level") is click.core.ParameterSource.DEFAULT:
        res.not_applied.pop("zstd_level", None)  # a level not typed was not asked for: the reused one's is kept
    if res.not_applied:  # --store and --zstd-level are not part of the lineage, which decides reuse
        asked = " and ".join(f"--{k.replace('_', '-')} {d['requested']}" for k, d in res.not_applied.items())
        level = f", zstd level {res.not_applied['zstd_level']['reused']}" if "zstd_level" in res.not_applied else ""
        click.echo(f"warning: {asked} not applied: {res.version.ref} was reused as it is ({res.path}{level}); for a new version "
                   f"with {'them' if len(res.not_applied) > 1 else 'it'}, create it under another name, or "
                   f"`daguerre dataset rm {res.version.ref}` first", err=True)  # fmt: skip
    if as_json:
        _echo_json({"ref": res.version.ref, "path": str(res.path), "identity": res.version.identity, "reused": res.reused,
                    "not_applied": res.not_applied, "samples": count, "size": size, "shards": spec.n_shards,
                    "shards_resumed": res.shards_reused, "skipped": res.skipped, "seconds": round(res.seconds, 3)})  # fmt: skip
        return
    if res.reused:
        click.echo(f"{res.version.ref} already has this lineage (same recipe, source, seed, count, size, shard size, crop); reusing it: {res.path}")
        return
    resumed = f", {res.shards_reused} shards resumed" if res.shards_reused else ""
    skipped = f", {len(res.skipped)} unreadable source files skipped" if res.skipped else ""
    click.echo(
        f"created {res.version.ref} ({count} samples, {size} px, {spec.n_shards} shards) at {res.path} "
        f"in {res.seconds:.1f} s{resumed}{skipped}"
    )


@dataset.command("export")
@click.argument("ref")
@click.option("--format", "fmt", type=click.Choice(["png"]), default="png", show_default=True, help="File format of the images.")
@click.option("--out", "-o", type=_Path(file_okay=False), required=True,
              help="A new or empty folder, or this dataset's interrupted export (resumed); not under $DAGUERRE_HOME/datasets nor inside a store.")
@_json_option
def dataset_export(ref: str, fmt: str, out: str, as_json: bool) -> None:
    """Write a dataset as PNG triplets (degraded, clean, mask) plus params JSON."""
    from pathlib import Path

    from pipelines import export_png, open_dataset

    ds = open_dataset(ref)
    with _progress(len(ds), "exporting", "samples") as advance:
        n, there = export_png(ds, Path(out), on_sample=advance)
    if as_json:
        _echo_json({"dataset": str(ds.path), "out": out, "written": n, "already_there": there})
        return
    resumed = f" ({there} were already there: resumed)" if there else ""
    click.echo(f"exported {n} samples of {ds.path} to {out}{resumed}")


def _human_bytes(n: int | None) -> str:
    from pipelines.layout import human_bytes

    return human_bytes(n)


@dataset.command("ls")
@_json_option
def dataset_ls(as_json: bool) -> None:
    """List registered versions: name, version, tags, count, size, recipe, created, bytes."""
    from pipelines.catalog import Catalog

    cat = Catalog()
    rows = cat.versions()
    cat.close()
    if as_json:
        _echo_json([v.to_dict() for v in rows])
        return
    if not rows:
        click.echo("no datasets yet (daguerre dataset create …)")
        return
    from rich.table import Table

    t = Table(box=None, pad_edge=False)
    for col in ("name", "version", "tags", "count", "size", "recipe", "created", "bytes"):
        t.add_column(col, justify="right" if col in ("count", "size", "bytes") else "left")
    for v in rows:
        recipe = "real photos" if v.kind == "real" else f"{v.recipe_name or '?'} {str(v.recipe_hash)[:8]}"
        t.add_row(v.name, v.version, ",".join(v.tags), str(v.count), str(v.size), recipe, v.created[:19], _human_bytes(v.bytes))
    _console(width=160).print(t)


@dataset.command("info")
@click.argument("ref")
@_json_option
def dataset_info(ref: str, as_json: bool) -> None:
    """Show a version: lineage, canonical recipe, attributes, library versions, checksums, skipped sources."""
    from pipelines.versioning import info

    d = info(ref)
    if as_json:
        _echo_json(d)
        return
    click.echo(f"{d['ref']}  ({d['kind']}, {d['count']} samples of {d['size']} px, fields {', '.join(d['fields'])})")
    click.echo(f"path:       {d['path']}")
    click.echo(f"tags:       {', '.join(d['tags']) or '-'}")
    click.echo(f"created:    {d['created']}   bytes on disk: {_human_bytes(d['bytes'])}")
    click.echo(f"identity:   {d['identity']}")
    click.echo(f"lineage:    {d['lineage_hash']}")
    for k, v in (d["lineage"] or {}).items():
        click.echo(f"  {k}: {v}")
    s = d["source"]
    click.echo(f"source:     {s['spec']} ({s['files']} files, fingerprint {str(s['fingerprint'])[:16]})")
    for sk in s["skipped"]:
        click.echo(_one_line(f"  skipped: {sk['reason']}"))  # a file's name: one line, no terminal control
    c = d["checksums"]
    click.echo(f"checksums:  {c['shards']} shards (SHA-256 of decoded data), overall {c['checksum']}")
    versions = d["versions"] or {}  # they name daguerre itself too (datasets made before that did not)
    head = "" if "daguerre" in versions else f"daguerre {d['code_version']}; "
    click.echo("code:       " + head + ", ".join(f"{k} {v}" for k, v in versions.items()))
    if d["recipe"]:
        click.echo(f"recipe:     {d['recipe'].get('name') or '-'} (recipe_hash {d['recipe_hash']})")
        from degrade import Recipe

        click.echo("  " + Recipe.from_dict(d["recipe"]).to_yaml().replace("\n", "\n  ").rstrip())


@_pair_command(dataset, "diff", "pipelines.versioning:diff")
def dataset_diff(d: dict) -> None:
    """Compare two versions: settings, recipe (per operator and parameter), source, sampled parameters."""
    click.echo(f"--- {d['a']}\n+++ {d['b']}" + ("   (identical data)" if d["identical"] else ""))
    for k, (x, y) in d["settings"].items():
        click.echo(f"{k}: {x} -> {y}")
    if d["recipe"]:
        click.echo("recipe:")
        for line in d["recipe"]:
            click.echo(f"  {line}")
    if d["source"]:
        src = d["source"]
        click.echo(f"source: {src['spec'][0]} -> {src['spec'][1]}: {len(src['only_in_a'])} files only in A, "
                   f"{len(src['only_in_b'])} only in B, {len(src['changed'])} changed, "
                   f"unreadable files skipped {src['skipped'][0]} -> {src['skipped'][1]}")  # fmt: skip
    for k, (x, y) in d["library_versions"].items():
        click.echo(f"library {k}: {x} -> {y}")
    if d["params"]:
        click.echo("sampled parameters (A | B): applied share, mean [p10, p50, p90] or frequencies; * where A and B differ")

        def fmt(e):
            if e is None:
                return "never applied"
            if "mean" in e:
                return f"{e['applied']:5.1%} {e['mean']:.3g} [{e['p10']:.3g}, {e['p50']:.3g}, {e['p90']:.3g}]"
            return f"{e['applied']:5.1%} " + " ".join(f"{k}:{v:.0%}" for k, v in e["freq"].items())

        for k, (x, y) in d["params"].items():
            mark = " " if x == y else "*"
            click.echo(f" {mark}{k:<34} {fmt(x):<42} | {fmt(y)}")


@dataset.command("verify")
@click.argument("ref", required=False)
@click.option("--all", "all_", is_flag=True, help="Verify every registered version.")
@_json_option
def dataset_verify(ref: str | None, all_: bool, as_json: bool) -> None:
    """Recompute the SHA-256 of every shard's decoded data and check the recorded settings, recipe and
    source list against the lineage; non-zero exit naming any bad shard or attribute."""
    from pipelines.catalog import Catalog
    from pipelines.versioning import verify

    if all_ == bool(ref):
        raise click.UsageError("give a dataset reference or --all")
    if all_:
        cat = Catalog()
        refs = [v.ref for v in cat.versions()]
        cat.close()
    else:
        refs = [ref]
    reports = []
    for r in refs:
        with _progress(1, f"verifying {r}", "samples") as advance:  # verify sets the total once it has read it
            reports.append(verify(r, on_shard=advance, on_start=advance.start))
    if as_json:
        _echo_json([{"ref": x.ref, "shards": x.shards, "ok": x.ok, "missing": x.missing, "problems": x.problems} for x in reports])
    else:
        for x in reports:
            click.echo(f"{x.ref}: {x.status} ({x.shards} shards)")
            for p in x.problems:
                click.echo(_one_line(f"  {p}"), err=True)
    if not all(x.ok for x in reports):
        bad = [x for x in reports if not x.ok]
        raise SystemExit(f"error: {len(bad)} version(s) failed verification: {bad[0].ref}: {bad[0].problems[0]}")


@dataset.command("tag")
@click.argument("ref")
@click.argument("tag")
@_json_option
def dataset_tag(ref: str, tag: str, as_json: bool) -> None:
    """Point TAG at a version: then NAME@TAG refers to it."""
    from pipelines.catalog import Catalog

    cat = Catalog()
    v = cat.tag(ref, tag)
    cat.close()
    if as_json:
        _echo_json({"tag": f"{v.name}@{tag}", "version": v.to_dict()})
    else:
        click.echo(f"{v.name}@{tag} -> {v.ref}")


@dataset.command("untag")
@click.argument("ref")
@_json_option
def dataset_untag(ref: str, as_json: bool) -> None:
    """Remove a tag: daguerre dataset untag NAME@TAG."""
    from degrade import DaguerreError
    from pipelines.catalog import Catalog
    from pipelines.refs import parse_ref

    r = parse_ref(ref)
    if r.path is not None or not r.version:
        raise DaguerreError(f"expected NAME@TAG, got {ref!r}")
    cat = Catalog()
    cat.untag(r.name, r.version)
    cat.close()
    _echo_json({"untagged": ref}) if as_json else click.echo(f"removed tag {ref}")


@dataset.command("reproduce")
@click.argument("ref")
@click.option("--workers", "-w", type=click.IntRange(min=1), default=os.cpu_count() or 2, show_default="CPU count", help="Dask workers (see --scheduler).")
@click.option("--scheduler", type=click.Choice(["processes", "threads"]), default="processes", show_default=True,
              help="Dask workers as processes or threads (as dataset create).")
@_json_option
def dataset_reproduce(ref: str, workers: int, scheduler: str, as_json: bool) -> None:
    """Regenerate a version from its recorded lineage into a scratch store ($DAGUERRE_HOME/scratch) and compare checksums."""
    from pipelines.versioning import reproduce

    with _progress(1, f"reproducing {ref}", "samples") as advance:  # reproduce sets the total
        r = reproduce(ref, workers, scheduler, on_shard=advance, on_start=advance.start)
    if as_json:
        _echo_json(r.__dict__)
    elif r.identical:
        click.echo(f"{r.ref}: identical (every shard checksum matches)")
    else:
        click.echo(f"{r.ref}: DIFFERENT in {len(r.differing_shards)} shard(s)")
        for line in r.differing_shards[:20]:
            click.echo(f"  {line}")
    if r.changed_versions and not as_json:
        click.echo("library versions changed since generation: " + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in r.changed_versions.items()))
    if not r.identical:
        more = f" (and {len(r.differing_shards) - 1} more)" if len(r.differing_shards) > 1 else ""
        raise SystemExit(f"error: {r.ref} differs from its recorded checksums: {r.differing_shards[0]}{more}")


@dataset.command("show")
@click.argument("ref")
@click.option("--out", "-o", type=_Path(dir_okay=False), required=True, help="Sheet to write (.png, .jpg or .webp).")
@click.option("--count", "-n", "--n", "n", cls=_OldSpelling, type=click.IntRange(1, 200), default=16, show_default=True, help="Samples on the sheet.")
@click.option("--overwrite", is_flag=True, help="Replace a file at --out that daguerre did not write (refused otherwise).")
@_json_option
def dataset_show(ref: str, out: str, n: int, overwrite: bool, as_json: bool) -> None:
    """Write a contact sheet of degraded / clean / mask triplets with key params under each."""
    from pathlib import Path

    from degrade.batch import check_not_foreign
    from degrade.sheet import check_sheet_path, save_sheet
    from pipelines import open_dataset
    from pipelines.show import dataset_sheet

    check_sheet_path(out)
    if not overwrite:
        check_not_foreign([[Path(out)]])
    ds = open_dataset(ref)
    save_sheet(dataset_sheet(ds, n), out)
    if as_json:
        _echo_json({"out": out, "samples": min(n, len(ds)), "dataset": str(ds.path)})
    else:
        click.echo(f"wrote {out} ({min(n, len(ds))} samples of {ds.path})")


@_rm_command(dataset, "ref", "Also remove a tagged version (and its tags), or one that other versions were made from.")
def dataset_rm(ref: str, force: bool, as_json: bool) -> None:
    """Remove a version (refuses a tagged one, or one that others were made from, without --force)."""
    from degrade import DaguerreError
    from pipelines.catalog import Catalog
    from pipelines.refs import parse_ref

    r = parse_ref(ref)
    if r.path is not None or not r.version:
        raise DaguerreError(f"name the version to remove, e.g. {r.name or 'NAME'}@v1")
    cat = Catalog()
    r = cat.remove(ref, force)
    cat.close()
    if as_json:
        _echo_json({"removed": r.version.to_dict(), "data_was_gone": r.data_was_gone, "dependants": r.dependants})
        return
    size = "its data was already gone" if r.data_was_gone else _human_bytes(r.version.bytes)
    click.echo(f"removed {r.version.ref} ({size})" + "".join(f"; {n}" for n in _made_from_notes(r.dependants)))


@dataset.command("gc")
@click.option("--dry-run", is_flag=True, help="List what would be removed.")
@_json_option
@click.option("--force", is_flag=True, help="Also remove complete stores that no catalog entry lists (kept otherwise).")
def dataset_gc(dry_run: bool, as_json: bool, force: bool) -> None:
    """Remove data that no catalog entry references (crash leftovers, unfinished generations, scratch
    copies of killed reproduce runs, dataset folders left holding only a lock); complete stores that no
    entry lists are kept unless --force."""
    from pipelines.catalog import Catalog, collect_garbage

    cat = Catalog()
    kept: list = []
    found = collect_garbage(cat, dry_run, force, kept)
    cat.close()
    if as_json:
        _echo_json({"dry_run": dry_run, "items": [{"path": str(p), "bytes": n} for p, n in found], "kept": [str(p) for p in kept]})
        return
    for p, n in found:
        click.echo(f"{'would remove' if dry_run else 'removed'} {p} ({_human_bytes(n)})")
    for p in kept:
        click.echo(f"kept {p}: a complete store that no catalog entry lists (re-run its `dataset create` to register it, or gc --force)")
    click.echo(f"{len(found)} item(s), {_human_bytes(sum(n for _, n in found))}" + (" (dry run)" if dry_run else ""))


# -- restoration -------------------------------------------------------------------------------
@cli.command("restore")
@click.argument("inputs", nargs=-1, required=True, type=_Path(readable=False))  # an unreadable one: a failed input
@click.option("--out", "-o", type=_Path(file_okay=False), required=True, help="Output folder.")
@_model_option
@click.option("--scratches", default="auto", show_default=True,
              help="auto (detect; the bundle's calibrated mask), all (every detection, also unconfident ones: "
                   "more faint scratches inpainted, more false alarms), none, or a mask file/folder.")
@click.option("--tile", type=click.IntRange(min=64), default=256, show_default=True,
              help="Tile size of the memory-bounded, seam-free tiling (at least twice its 32-pixel overlap).")
@_device_option
@click.option("--anchor/--no-anchor", default=True, show_default=True,
              help="Re-anchor the restoration's local tones to the input outside the mask, as the bundle's calibration says.")
@click.option("--overwrite", is_flag=True, help="Replace files in the outputs' places that daguerre did not write (refused otherwise).")
@click.option("--redo", is_flag=True, help="Restore every input again, also those whose outputs are up to date (skipped otherwise).")
def restore_cmd(inputs, out, model, scratches, tile, device, anchor, overwrite, redo) -> None:
    """Restore old photos (files, folders, globs, builtin:real): NAME.png, NAME.mask.png, NAME.compare.png.

    Folders and globs skip what lies in an --out inside them; one that matches nothing, or a folder in one that cannot be listed, counts as a failed input.
    A re-run skips the inputs whose outputs were made from the same input, model and options and are intact.

    Pipeline: defect detection → VAE1 encoder → latent mapping with the mask → VAE2 decoder →
    tone anchoring (if the bundle is calibrated with one).
    """
    from pathlib import Path

    from degrade import DaguerreError
    from degrade.batch import resolve_inputs
    from zoo.restore import restore_files

    unlisted: list[tuple[str, str]] = []
    paths = resolve_inputs(inputs, Path(out), unlisted)
    if not paths:
        raise DaguerreError(f"no images found in {' '.join(inputs)}")
    with _progress(len(paths), "restoring", "photos") as advance:
        report = restore_files(paths, Path(out), model, scratches, tile, device, on_file=advance, anchor=anchor, overwrite=overwrite,
                               redo=redo)  # fmt: skip
    report.failed += unlisted
    if report.written or report.skipped:
        line = f"restored {len(report.written)} photo(s) into {out}"
        if report.written:
            line += f" ({sum(report.seconds) / len(report.seconds):.2f} s each)"
        if report.skipped:
            line += f"; skipped {len(report.skipped)} already restored with the same input, model and options (--redo restores them again)"
        click.echo(line)
    if report.failed:
        for path, reason in report.failed:
            click.echo(f"error: {_one_line(reason)}", err=True)
        raise SystemExit(f"error: {len(report.failed)} of {len(paths) + len(unlisted)} inputs failed: " + ", ".join(p for p, _ in report.failed))


@cli.command("demo")
@click.option("--out", "-o", type=_Path(file_okay=False), default="demo-out", show_default=True,
              help="Output folder: index.html and what it shows.")
@_model_option
def demo_cmd(out: str, model: str) -> None:
    """Run the main job on bundled data: degrade, build a dataset, restore real old photos, write index.html."""
    import time
    from pathlib import Path

    from zoo.demo import build_demo

    t = time.perf_counter()
    page = build_demo(Path(out), model, log=click.echo)
    click.echo(f"wrote {page} in {time.perf_counter() - t:.0f} s; open it in a browser")


# -- benchmarking --------------------------------------------------------------------------------
@cli.group("bench", invoke_without_command=True)
@click.option("--dataset", "-d", help="Dataset reference NAME[@V] or store path.")
@click.option("--methods", default="identity,nlm,telea,nlm+telea,zoo:default", show_default=True,
              help="Comma-separated: identity, nlm, telea, ns, nlm+telea, median, bilateral, zoo:NAME|PATH, zoo-raw:NAME|PATH (no tone anchoring).")
@click.option("--count", "-n", "--n", "n", cls=_OldSpelling, type=click.IntRange(min=1), help="Number of samples (default: all).")
@click.option("--out", "-o", type=_Path(file_okay=False), default="bench-out", show_default=True,
              help="Report folder: an earlier report's files are replaced; files of those names that bench did not write are refused.")
@click.option("--mask", "mask_source", type=click.Choice(["gt", "detected"]), default="detected", show_default=True,
              help="Mask given to inpainting methods: the dataset's ground truth, or the detector of the first zoo method (else the default bundle's).")
@click.option("--workers", "-w", type=click.IntRange(min=1), default=os.cpu_count() or 2, show_default="CPU count",
              help="Processes scoring samples (1: in this process; at most the cores and the samples).")
@_device_option
@click.pass_context
def bench(ctx, dataset, methods, n, out, mask_source, workers, device) -> None:
    """Benchmark restoration methods on a versioned dataset: metrics with CIs, breakdowns, report.

    Writes results.json, report.md, report.html, sheet.png and per-parameter plots into --out.
    `daguerre bench compare A B` prints the differences between two results.json files.
    """
    if ctx.invoked_subcommand is not None:
        return
    from pathlib import Path

    from zoo.bench import probe_device, run_bench
    from zoo.report import HEADER, prepare_out, real_rows, summary_rows, write_report

    if not dataset:
        raise click.UsageError("bench needs --dataset NAME[@VERSION] (or a subcommand: compare)")
    specs = [m.strip() for m in methods.split(",") if m.strip()]
    from pipelines import open_dataset
    from zoo.methods import get_method
    from zoo.restore import resolve_device

    dev = str(resolve_device(device))  # --device cuda without a GPU, like a misspelt method or model, fails before --out is made
    size = len(open_dataset(dataset))
    count = size if n is None else min(n, size)  # the bar's total: --count beyond the set scores the whole set
    for m in specs:  # a misspelt method or model fails before --out is made (it left an empty bench-out behind)
        get_method(m, probe_device(dev, workers, count))  # where run_bench will want it (the samples it scores): loaded once
    prepare_out(Path(out))
    with _progress(count, "benchmarking", "samples") as advance:
        result = run_bench(dataset, specs, n, mask_source, workers, on_sample=advance, device=device)
    files = write_report(result, Path(out))
    if result["real_photos"]:
        click.echo("real old photos: no ground truth; NIQE (no-reference, lower is more natural):")
        for label, score, ms in real_rows(result):
            click.echo(f"{label:<16} NIQE {score:<22} {ms} ms")
    else:
        for row in summary_rows(result):
            cells = dict(zip(HEADER, row))
            click.echo(f"{row[0]:<16} PSNR {cells['PSNR dB [95% CI]']:<22} SSIM {cells['SSIM [95% CI]']:<26} "
                       f"MS-SSIM {cells['MS-SSIM [95% CI]']:<26} F1 {cells['F1']:<6} {cells['ms/image']} ms")
    extra = ([files["sheet"].name] if files["sheet"] else []) + ([f"{len(files['plots'])} plot-*.png"] if files["plots"] else [])
    click.echo(f"wrote {files['html']} (open it in a browser), {files['md'].name}, {files['results'].name}"
               + "".join(f", {x}" for x in extra) + f" in {out}")  # fmt: skip


@_pair_command(bench, "compare", "zoo.report:compare")
def bench_compare(d: dict) -> None:
    """Print the differences (B − A) between two results.json files."""
    if not d["same_dataset"]:
        click.echo("note: the two results are on different datasets")
    known = lambda v: "unknown" if v is None else v  # noqa: E731  (a results.json written before the key was recorded)
    for key, (a, b) in d.get("differences", {}).items():
        click.echo(f"note: {key} differs ({known(a)} in A, {known(b)} in B): the means are not paired")
    for key, (a, b) in d.get("timing_differences", {}).items():
        click.echo(f"note: {key} differs ({known(a)} in A, {known(b)} in B): the seconds are not comparable")
    for label, row in d["methods"].items():
        parts = []
        for key, v in row.items():
            if v["delta"] is not None:
                parts.append(f"{key} {v['a']:.4g} -> {v['b']:.4g} ({v['delta']:+.4g})")
            elif (v["a"] is None) != (v["b"] is None):
                parts.append(f"{key} only in {'A' if v['a'] is not None else 'B'}")
        click.echo(f"{label:<16} " + "; ".join(parts))


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (loopback by default).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to bind (0: a free one, printed).")
@_model_option
@click.option("--workers", "-w", type=click.IntRange(min=1), default=1, show_default=True, help="Restorations running at once.")
@click.option("--queue", type=click.IntRange(min=0), default=8, show_default=True, help="Requests that may wait; beyond: 503.")
@click.option("--max-upload-mb", type=click.IntRange(min=1), default=25, show_default=True, help="Largest upload in MiB; beyond: 413.")
@click.option("--max-megapixels", type=float, default=40.0, show_default=True, help="Largest image, checked before decoding; beyond: 413.")
@click.option("--timeout", "timeout_s", type=float, default=300.0, show_default=True, help="Seconds a request may take, waiting for a worker included (504 after).")
@_device_option
def serve_cmd(host, port, model, workers, queue, max_upload_mb, max_megapixels, timeout_s, device) -> None:
    """Serve restoration over HTTP (POST /v1/restore, GET /v1/models, /healthz) and a web page at /."""
    from zoo.serve import ServeConfig, serve

    if not 0 < max_megapixels * 1e6 < float("inf") or not timeout_s > 0:  # 1e308 megapixels overflow; NaN passes a FloatRange
        raise click.UsageError("--max-megapixels must be finite and positive, --timeout positive")
    cfg = ServeConfig(model, workers, queue, max_upload_mb * 2**20, int(max_megapixels * 1e6), timeout_s, device)
    serve(host, port, cfg, on_ready=lambda bound: click.echo(f"daguerre serving {model} on http://{host}:{bound}/ (Ctrl-C to stop)"))


# -- training and the model zoo ----------------------------------------------------------------
_TRAIN_OPTIONS = [
    click.option("--config", "config_file", type=_Path(dir_okay=False), help="YAML file of settings (options override it)."),
    click.option("--steps", type=click.IntRange(min=1), help="Total optimisation steps [1000]."),
    click.option("--batch-size", type=click.IntRange(min=1), help="Batch size [8]."),
    click.option("--size", type=click.IntRange(min=16), help="Random crop side taken from the tiles [128]."),
    click.option("--lr", type=float, help="Adam learning rate [2e-4]."),
    click.option("--decay-start", type=click.IntRange(min=0), help="Step from which the learning rate decays linearly [0]."),
    click.option("--decay-steps", type=click.IntRange(min=0), help="Steps of that decay to zero; 0 keeps the rate constant [0]."),
    click.option("--beta1", type=click.FloatRange(0, 1, max_open=True), help="Adam beta1 [0.5]."),
    click.option("--beta2", type=click.FloatRange(0, 1, max_open=True), help="Adam beta2 [0.999]."),
    click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="[auto]"),
    click.option("--precision", type=click.Choice(["fp32", "bf16"]), help="bf16: forward passes under bfloat16 autocast (weights stay fp32) [fp32]."),
    click.option("--workers", "-w", type=click.IntRange(min=0), help="DataLoader worker processes [2]."),
    click.option("--seed", "-s", type=click.IntRange(0, 2**53 - 1), help="Seed of initialisation, batches and sampling [0]."),  # zoo.train.MAX_SEED
    click.option("--out", "-o", type=_Path(file_okay=False), help="Run folder [runs/STAGE]; re-run to resume. A new run refuses files of a run's names there that no run wrote."),
    click.option("--name", help="Name in the model store [the run folder's name]."),
    click.option("--preset", type=click.Choice(["small", "default", "official"]), help="Model size [small]."),
    click.option("--real", help="vae1: real old photos (R), a dataset reference."),
    click.option("--synthetic", help="vae1: synthetic degraded photos (X)."),
    click.option("--clean", help="vae2: clean photos (Y), read from the dataset's clean field."),
    click.option("--pairs", help="mapping, scratch: a synthetic dataset (degraded, clean, mask)."),
    click.option("--vae1", help="mapping: trained VAE1 (store name or path)."),
    click.option("--vae2", help="mapping: trained VAE2 (store name or path)."),
    click.option("--init", help="Fine-tune: start from this trained checkpoint of the same model (store name or path)."),
    click.option("--log-every", type=click.IntRange(min=1), help="Show the losses every N steps: on the progress bar, or as a line on stderr when not a terminal [10]."),
    click.option("--sample-every", type=click.IntRange(min=1), help="Sample sheet every N steps [200]."),
    click.option("--ckpt-every", type=click.IntRange(min=1), help="Checkpoint every N steps [200]."),
]


def _train_options(f):
    for opt in reversed(_TRAIN_OPTIONS):
        f = opt(f)
    return f


@cli.command("train")
@click.argument("stage", type=click.Choice(["vae1", "vae2", "mapping", "scratch"]))
@_train_options
@click.option("--replace", is_flag=True, help="Register over a model of the same --name from another run.")
def train_cmd(stage: str, config_file: str | None, replace: bool, **options) -> None:
    """Train one stage: vae1 (R ∪ X), vae2 (Y), mapping (X→Y, partial nonlocal), scratch (detector).

    Resumable: run the same command again after an interruption. The deployable weights are
    registered in the model store (`daguerre zoo ls`) with a card.
    """
    from zoo.train import required_inputs, run_command_config, train

    cfg = run_command_config(stage, options, config_file)
    missing = [f"--{f}" for f in required_inputs(stage) if not getattr(cfg, f)]
    if missing:  # given neither as an option nor in the --config file
        raise click.UsageError(f"train {stage} needs {', '.join(missing)}")
    with _progress(cfg.steps, f"train {stage}", "steps") as bar:
        started = []

        def on_step(step, logs):
            if not started:
                bar.start(cfg.steps, step - 1)
                started.append(1)
            bar()
            if step % cfg.log_every and step != cfg.steps:
                return
            if bar.bar is not None:
                bar.bar.update(bar.task, description=f"train {stage} " + " ".join(f"{k}={v:.3g}" for k, v in list(logs.items())[:4]))
            else:  # a log file or CI: a line, as the bar is quiet there
                click.echo(f"step {step}/{cfg.steps} " + " ".join(f"{k} {v:.4g}" for k, v in logs.items()), err=True)

        card = train(cfg, on_step=on_step, replace=replace)
    losses = ", ".join(f"{k} {v:.4g}" for k, v in card["losses"].items())
    pace = f" ({card['seconds_per_step']:.3f} s/step)" if card.get("seconds_per_step") is not None else ""  # None: no logged step
    click.echo(f"trained {stage} for {card['steps']} steps{pace}; registered {card['name']}: {losses}")


@cli.group()
def zoo() -> None:
    """Trained models and restoration bundles."""


@zoo.command("ls")
@_json_option
def zoo_ls(as_json: bool) -> None:
    """List registered checkpoints: name, stage, size, trained on, metrics."""
    from zoo.store import cards, summary

    rows = cards()
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo("no models yet (daguerre train …)")
        return
    click.echo(f"{'name':<18} {'stage':<8} {'size':>9}  {'origin':<7} trained on, metrics")
    for c in rows:
        s = summary(c)
        click.echo(f"{s['name']:<18} {s['stage']:<8} {_human_bytes(c['bytes']):>9}  {s['origin']:<7} on {s['trained_on']}  {s['metrics']}")


@zoo.command("info")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output: the whole card, with its path and parameter count.")
def zoo_info(ref: str, as_json: bool) -> None:
    """Show a checkpoint or bundle (store name or path): model, stage, parameters, training data, metrics."""
    from zoo import store

    d = store.info(ref)
    if as_json:
        _echo_json(d)
        return
    s = store.summary(d)
    click.echo(f"{s['name']}  (model {d.get('model') or '?'}, stage {s['stage']}, {d['parameters']:,} parameters)")
    click.echo(f"path:       {d['path']}")
    click.echo(f"trained on: {s['trained_on']}")
    click.echo(f"metrics:    {s['metrics'] or '-'}")
    click.echo(f"saved:      {d.get('saved') or '?'}")
    if isinstance(d.get("parts"), dict):
        click.echo("parts:      " + ", ".join(f"{k} {p.get('name') or '?'}" if isinstance(p, dict) else str(k) for k, p in d["parts"].items()))
    elif isinstance(d.get("config"), dict):
        click.echo(f"config:     {json.dumps(d['config'], sort_keys=True)}")


@_rm_command(zoo, "name", "Also remove a model that other store models record as made from it.")
def zoo_rm(name: str, force: bool, as_json: bool) -> None:
    """Remove a registered model from the store (refuses one that others were made from without --force)."""
    from zoo.store import remove

    d = remove(name, force)
    if as_json:
        _echo_json(d)
        return
    what = f"finished removing {name} (an earlier rm was cut short)" if d["finished"] else f"removed {name}"
    notes = _made_from_notes(d["dependants"]) + ([f"the shipped {name} is used again"] if d["shipped"] else [])
    click.echo(f"{what}: {len(d['files'])} file(s), {_human_bytes(d['bytes'])} freed" + "".join(f"; {n}" for n in notes))


@zoo.command("bundle")
@click.argument("name")
@click.option("--vae1", help="Trained VAE1, whose encoder is used (store name or path).")
@click.option("--vae2", help="Trained VAE2, whose decoder is used (store name or path).")
@click.option("--mapping", help="Trained latent mapping (store name or path).")
@click.option("--scratch", help="Trained scratch detector (store name or path).")
@click.option("--from", "base", metavar="BUNDLE", help="Copy this bundle, replacing only --scratch and/or --mapping.")
@click.option("--replace", is_flag=True, help="Register over an existing bundle of that name (its calibration is lost).")
def zoo_bundle(name: str, vae1: str | None, vae2: str | None, mapping: str | None, scratch: str | None, base: str | None,
               replace: bool) -> None:  # fmt: skip
    """Tie VAE1's encoder, the mapping, VAE2's decoder and the detector into a restoration bundle."""
    from zoo.bundle import make_bundle, replace_parts

    if base:
        if vae1 or vae2:
            raise click.UsageError("--from keeps the bundle's VAEs: give --scratch and/or --mapping")
        path = replace_parts(name, base, replace, mapping=mapping, scratch=scratch)
    else:
        missing = [f"--{k}" for k, v in (("vae1", vae1), ("vae2", vae2), ("mapping", mapping), ("scratch", scratch)) if not v]
        if missing:
            raise click.UsageError(f"missing {', '.join(missing)} (or --from BUNDLE to replace parts of one)")
        path = make_bundle(name, vae1, vae2, mapping, scratch, replace=replace)
    click.echo(f"bundle {name} -> {path}")


@zoo.command("calibrate")
@click.argument("name")
@click.option("--dataset", "-d", "datasets", required=True, multiple=True,
              help="Validation dataset with masks, made from training photos; repeat it for several (one per damage recipe).")
@click.option("--count", "-n", "--n", "n", cls=_OldSpelling, type=click.IntRange(min=1), default=200, show_default=True, help="Samples per dataset.")
@click.option("--objective", type=click.Choice(["restore", "f1"]), default="restore", show_default=True,
              help="restore: F1's threshold, then the hysteresis seeds and the tone anchoring that restore best (PSNR); "
                   "f1: F1 only, no anchoring.")
@_device_option
def zoo_calibrate(name: str, datasets: tuple[str, ...], n: int, objective: str, device: str) -> None:
    """Calibrate a bundle's defect mask (threshold, hysteresis seeds) and tone anchoring on validation datasets."""
    from pipelines import open_dataset
    from zoo.bundle import calibrate_threshold

    per_pass = sum(min(n, len(open_dataset(d))) for d in datasets)  # --count beyond a set's size takes the whole set
    with _progress(per_pass * (2 if objective == "restore" else 1), "calibrating", "samples") as advance:
        c = calibrate_threshold(name, list(datasets), n, on_sample=advance, objective=objective, device=device)
    f1 = c["f1"][c["thresholds"].index(c["chosen"])]
    click.echo(f"calibrated bundle written to {c['written']}")
    if objective == "f1":
        click.echo(f"{name}: detector threshold {c['chosen']} (pixel F1 {f1:.3f} on {c['samples']} samples)")
        return
    k = c["seeds"].index(c["seed"])
    seeds = f"regions seeded above {c['seed']}" if c["seed"] else "no hysteresis"
    psnr = ", ".join(f"{t['psnr'][k]:.2f} dB on {d}" for d, t in c["restoration"].items())
    click.echo(f"{name}: detector threshold {c['chosen']}, {seeds} ({c['rule']}; restoration PSNR {psnr}; "
               f"pixel F1 {c['seed_f1'][k]:.3f} on {c['samples']} samples)")
    a = c["anchor"]
    j, chosen = a["grid"].index(a["chosen"]), a["chosen"]
    what = f"sigma {chosen['sigma']:g} px, tau {chosen['tau'] or 'none'}" if chosen else "none"
    psnr = ", ".join(f"{t['psnr'][j]:.2f} dB on {d}" for d, t in a["restoration"].items())
    click.echo(f"{name}: tone anchoring {what} ({a['rule']}; restoration PSNR {psnr})")


def _print_any_path() -> None:
    """Let stdout print file names that are not UTF-8 as their bytes (like ``ls``), and, in another encoding
    (ISO-8859-1 locales), '?' for what it cannot show: a strict stdout (any ``*.UTF-8`` locale but C.UTF-8)
    failed on them, often after the work was done."""
    out = sys.stdout
    if out is not None and getattr(out, "errors", None) == "strict" and hasattr(out, "reconfigure"):
        import codecs

        out.reconfigure(errors="surrogateescape" if codecs.lookup(out.encoding).name == "utf-8" else "replace")


class _Stop(Exception):  # noqa: N818 (not an error: a way out)
    """A command's Ctrl-C, SIGTERM or closed pipe (its ``__cause__``) on its way past click, which printed a blank
    line before ``aborted`` and ended in silence with status 1 on a closed pipe."""


@contextlib.contextmanager
def _stopping():
    """Carry Ctrl-C, SIGTERM and a closed pipe past click's own handling as a :class:`_Stop`."""
    try:
        yield
    except (KeyboardInterrupt, BrokenPipeError) as e:
        raise _Stop from e


def _stdout_closed() -> bool:
    """Whether stdout is a pipe or socket whose reader has gone (``daguerre … | head -1``): poll says POLLERR or POLLHUP."""
    import select

    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), 0)  # errors and hang-ups are always reported
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poll.poll(0))
    except (AttributeError, OSError, ValueError):  # no stdout, no file descriptor (a test's capture)
        return False


def _quiet_exit_on_closed_pipe() -> None:
    """Stop quietly with status 141 (128 + SIGPIPE, what the shell reports for ``ls`` in ``ls | head -1``), stdout
    pointed at /dev/null so that Python's own flush at exit finds no closed pipe either."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(141)


class _Terminated(KeyboardInterrupt):
    """SIGTERM (``kill PID``, a service manager stopping the job), raised like Ctrl-C so the same clean-up runs."""


def _raise_terminated(signum, frame) -> None:
    raise _Terminated


def main(argv: list[str] | None = None) -> None:
    """Entry point: library errors become one line on stderr and exit status 1, never a traceback; SIGTERM ends
    a command like Ctrl-C does (pools shut, temporaries removed), with one line and exit status 143 (130); a
    closed pipe on stdout, in silence with status 141."""
    import signal
    import threading

    before = signal.getsignal(signal.SIGTERM)
    own = before == signal.SIG_DFL and threading.current_thread() is threading.main_thread()
    if own:
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        _main(argv)
    finally:
        if own:
            signal.signal(signal.SIGTERM, before)


def _one_line(text: str) -> str:
    """``text`` with its control characters and line breaks (a file name's newline, tab or ESC) escaped as ``repr``
    escapes them, other characters kept: an error stays one line and cannot drive the terminal."""
    import unicodedata

    return "".join(repr(c)[1:-1] if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)


def _main(argv: list[str] | None) -> None:
    _print_any_path()
    if sys.stdout is None:  # fd 1 closed (`>&-`): the output would be lost, and the next file opened would become fd 1
        click.echo("error: standard output is closed (redirect it to /dev/null to discard the output)", err=True)
        sys.exit(1)
    try:
        rc = cli.main(args=argv, prog_name="daguerre", standalone_mode=False)
        sys.stdout.flush()  # what is still buffered meets a closed pipe here, not in Python's flush at exit
    except (_Stop, BrokenPipeError) as e:
        cause = e.__cause__ if isinstance(e, _Stop) else e
        if isinstance(cause, BrokenPipeError) and _stdout_closed():
            _quiet_exit_on_closed_pipe()
        if isinstance(cause, BrokenPipeError):  # another pipe than stdout: an error like any
            click.echo(f"error: {cause.strerror}", err=True)
            sys.exit(1)
        click.echo("terminated" if isinstance(cause, _Terminated) else "aborted", err=True)
        sys.exit(143 if isinstance(cause, _Terminated) else 130)
    except click.exceptions.Abort as e:
        if isinstance(e.__cause__, _Terminated):
            click.echo("terminated", err=True)
            sys.exit(143)
        click.echo("aborted", err=True)
        sys.exit(130)
    except getattr(click.exceptions, "NoArgsIsHelpError", ()) as e:  # a bare group: its help, as click prints it
        e.show()
        sys.exit(e.exit_code)
    except click.UsageError as e:  # one line, like every other error (click's own takes four)
        where = e.ctx.command_path if e.ctx else "daguerre"
        message = " ".join(line.strip() for line in e.format_message().splitlines())  # a choice's list comes one a line
        click.echo(f"error: {_one_line(message)} (see '{where} --help')", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except SystemExit as e:  # a command's `raise SystemExit("error: …")`, which Python prints as it is
        if isinstance(e.code, str):
            raise SystemExit(_one_line(e.code)) from None
        raise
    except KeyboardInterrupt as e:
        click.echo("terminated" if isinstance(e, _Terminated) else "aborted", err=True)
        sys.exit(143 if isinstance(e, _Terminated) else 130)
    except Exception as e:  # noqa: BLE001
        from degrade.errors import DaguerreError

        if os.environ.get("DAGUERRE_DEBUG"):
            raise
        if isinstance(e, DaguerreError):
            click.echo(f"error: {_one_line(str(e))}", err=True)
        elif isinstance(e, OSError) and e.strerror:  # the machine's answer (permissions, full disk, long names), not a bug
            where = f"{e.filename}: " if e.filename else ""
            click.echo(f"error: {_one_line(where + e.strerror)}", err=True)
        else:
            msg = str(e).splitlines()[0] if str(e) else ""
            click.echo(f"error: internal {type(e).__name__}: {_one_line(msg)} (set DAGUERRE_DEBUG=1 for the traceback)", err=True)
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
