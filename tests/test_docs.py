"""The generated docs match the code, and the README keeps its two set-up commands first."""

from pathlib import Path

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
