"""The sources cite only documents a user can read: the paper and the repository's docs/."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "contractrl"

#: Citations of the project's private specification, which is not part of the repository.
PRIVATE_CITATIONS = ("SPEC §", "SPEC.md")

#: A cited project document, e.g. ``docs/model.md``.
DOC_PATH = re.compile(r"docs/[\w.-]+\.md")


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_sources_do_not_cite_the_private_specification():
    offending = {}
    for path in _sources():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if any(citation in line for citation in PRIVATE_CITATIONS):
                offending.setdefault(str(path.relative_to(ROOT)), []).append(number)
    assert not offending, (
        "cite the paper or docs/model.md instead of the private specification: "
        + "; ".join(
            f"{name} (lines {', '.join(map(str, lines))})" for name, lines in offending.items()
        )
    )


def test_cited_docs_exist():
    cited = {}
    for path in [*_sources(), ROOT / "README.md"]:
        for doc in DOC_PATH.findall(path.read_text(encoding="utf-8")):
            cited.setdefault(doc, set()).add(str(path.relative_to(ROOT)))
    assert "docs/model.md" in cited
    missing = {doc: sorted(files) for doc, files in cited.items() if not (ROOT / doc).is_file()}
    assert not missing, f"cited documents missing from the repository: {missing}"
