"""The generated docs match the code, and the README keeps its two set-up commands first."""

import os
import re
from pathlib import Path

import pytest

from degrade.describe import operators_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_operator_reference_is_generated_from_the_registry():
    text = (ROOT / "docs" / "degrade.md").read_text()
    section = text.split("<!-- BEGIN GENERATED: operators -->")[1].split("<!-- END GENERATED: operators -->")[0]
    assert section.strip() == operators_markdown().strip(), "run: python docs/generate.py"


def test_readme_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    head = text[: text.index("make test") + 20]
    assert "make demo" in head and "make test" in head


def test_contact_sheets_exist():
    for name in ("operators.png", "old-photo-vs-real.png"):
        assert (ROOT / "docs" / "img" / name).stat().st_size > 10_000


def test_docs_have_no_repeated_text_and_their_local_links_resolve():
    """Guards against a scripted edit gone wrong (a paragraph pasted thousands of times) and dead links."""
    import re
    from collections import Counter

    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        counts = Counter(line for line in text.splitlines() if len(line) >= 40 and not line.startswith("|"))
        repeated = [line for line, n in counts.items() if n > 3]
        assert not repeated, f"{doc.name}: repeated lines {repeated[:2]}"
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" not in target and not target.startswith("mailto:"):
                assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"


def _python_examples():
    out = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for k, m in enumerate(re.finditer(r"```python\n(.*?)```", doc.read_text(), re.S)):
            out.append(pytest.param(m.group(1), id=f"{doc.name}[{k}]"))
    import degrade

    lines = [line.strip()[4:] for line in degrade.__doc__.splitlines() if line.strip().startswith(">>> ")]
    return [*out, pytest.param("\n".join(lines), id="degrade.__doc__")]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """The datasets the examples name: ``train`` (1,000 samples: they read sample 999), tagged ``paper-2026``."""
    from pipelines import build_spec, create_dataset
    from pipelines.catalog import Catalog

    old = os.environ.get("DAGUERRE_HOME")
    os.environ["DAGUERRE_HOME"] = str(tmp_path_factory.mktemp("home"))
    create_dataset(build_spec("train", "builtin:real", 1000, 8, 0, {"steps": [{"op": "jpeg"}]}), workers=1, scheduler="threads")
    cat = Catalog()
    cat.tag("train@v1", "paper-2026")
    cat.close()
    yield
    if old is None:
        os.environ.pop("DAGUERRE_HOME", None)
    else:
        os.environ["DAGUERRE_HOME"] = old


@pytest.mark.parametrize("code", _python_examples())
def test_python_examples_run_as_written(code, catalog, photo, tmp_path, monkeypatch):
    """Every ```python block of the README and docs, and the package docstring's example, on a photo; in a
    scratch folder, as what they write must not land in the checkout."""
    from zoo.methods import METHODS

    monkeypatch.chdir(tmp_path)
    registered = dict(METHODS)
    try:
        exec(compile(code, "<example>", "exec"), {"image": photo[:64, :96].copy()})
    finally:  # the bench example registers a method
        METHODS.clear()
        METHODS.update(registered)


def _cli_commands():
    """Every command of ``daguerre`` as (path, its options' names), groups included."""
    import click

    import cli

    ctx, out = click.Context(cli.cli), {}

    def walk(cmd, path):
        out[" ".join(path)] = {o for p in cmd.params if isinstance(p, click.Option) for o in p.opts + p.secondary_opts} | {"-h", "--help"}
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), [*path, name])

    walk(cli.cli, [])
    return out


def test_every_command_is_in_the_docs_and_every_documented_command_line_exists():
    """`zoo info`, `dataset untag` and `demo` were named nowhere as `daguerre …`; a documented command or option
    that the CLI lacks (a rename) fails here too. Reads the `daguerre …` lines of README.md and docs/*.md."""

    commands = _cli_commands()
    aliases = {"list": "ls", "inspect": "info"}
    named, wrong = set(), []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for line in doc.read_text().splitlines():
            for m in re.finditer(r"(?:^|`)daguerre ([a-z][^`#\n]*)", line):
                words, path = [w.strip("[]") for w in m.group(1).replace("…", "").split()], []
                while words and " ".join([*path, aliases.get(words[0], words[0])]) in commands:
                    path.append(aliases.get(words[0], words[0]))
                    words.pop(0)
                named.add(" ".join(path))
                options = commands[" ".join(path)]
                wrong += [f"{doc.name}: daguerre {' '.join(path)} {w}" for w in words if w.startswith("-") and w.split("=")[0] not in options]
    assert not wrong, wrong
    leaves = [c for c in commands if c and not any(k.startswith(c + " ") for k in commands)]
    assert not [c for c in leaves if c not in named], "commands the docs never show as `daguerre …`"


def test_restore_docs_name_every_operator_the_pinned_test_recipes_hold_back():
    """docs/restore.md says which operators the builtin old-photo has moved past the pinned test recipes: it named
    stains v2 and film_grain v2, not vignette v2 (which old-photo draws too)."""
    import yaml

    from degrade import get_operator

    def pins(node):
        if isinstance(node, dict):
            if isinstance(node.get("op"), str) and "version" in node:
                yield node["op"], node["version"]
            for v in node.values():
                yield from pins(v)
        elif isinstance(node, list):
            for v in node:
                yield from pins(v)

    recipe = yaml.safe_load((ROOT / "zoo" / "default" / "old-photo-v1.yaml").read_text())
    behind = sorted({(op, get_operator(op).version) for op, v in pins(recipe) if get_operator(op).version != v})
    assert behind, "the pinned recipe holds nothing back: drop the sentence"
    text = " ".join((ROOT / "docs" / "restore.md").read_text().split())
    moved = text.split("the builtin `old-photo` has since moved to ")[1].split(", and would build")[0]
    assert sorted(re.findall(r"`([\w-]+)` v(\d+)", moved)) == [(op, str(v)) for op, v in behind], moved


def test_the_shipped_bundles_figures_quoted_in_the_docs_are_its_cards():
    """README.md, docs/restore.md and the top of docs/benchmarks.md quote the shipped bundle's held-out gains and
    restoration-mask F1 by hand; a bundle shipped with a new card and one of them left as it was fails here."""
    import json

    card = ROOT / "zoo" / "weights" / "default.json"
    if not card.exists():
        pytest.skip("no shipped default bundle")
    m = json.loads(card.read_text())["metrics"]
    b, o = m["test-bopbtl"], m["test-old-photo"]
    text = {name: " ".join((ROOT / name).read_text().split()) for name in ("README.md", "docs/restore.md", "docs/benchmarks.md")}
    quoted = {
        "README.md": [f"gains +{b['gain_psnr']:.1f} dB and +{o['gain_psnr']:.1f} dB PSNR over the input"],
        "docs/restore.md": [
            f"+{b['gain_psnr']:.2f} dB PSNR / +{b['gain_ssim']:.3f} SSIM over the input on `bopbtl` damage and "
            f"+{o['gain_psnr']:.2f} dB / +{o['gain_ssim']:.3f} on `old-photo`",
            f"restoration mask {b['detection_f1']:.2f} on `bopbtl` (tears) and {o['detection_f1']:.2f} on `old-photo`",
        ],
        "docs/benchmarks.md": [
            f"`bopbtl` +{b['gain_psnr']:.2f} dB / +{b['gain_ssim']:.3f}; `old-photo` +{o['gain_psnr']:.2f} dB / +{o['gain_ssim']:.3f}",
            f"| {b['detection_f1']:.2f} (`bopbtl`), {o['detection_f1']:.2f} (`old-photo`;",
        ],
    }
    missing = [f"{name}: {q}" for name, qs in quoted.items() for q in qs if q not in text[name]]
    assert not missing, missing
