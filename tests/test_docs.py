"""The README stays short and its links work: every relative link in README.md and docs/*.md
points to an existing file, every docs page is reachable from the README, no machine paths."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def relative_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(page.read_text()) if not re.match(r"[a-z]+:", t)]


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_every_relative_link_resolves():
    broken = [f"{p.relative_to(ROOT)}: {t}" for p in PAGES for t in relative_links(p) if not (p.parent / t).exists()]
    assert not broken, broken


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / t).resolve() for t in relative_links(ROOT / "README.md")}
    assert [p for p in PAGES[1:] if p.resolve() not in linked] == []


def test_no_machine_paths():
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in PAGES for i, line in enumerate(p.read_text().splitlines(), 1)
            if re.search(r"(/work/|/home/|/Users/|/tmp/pytest)", line)]
    assert not hits, hits


def test_the_readme_answer_is_the_committed_metrics():
    """The README's table is generated from reports/metrics (so it cannot drift from dvc.lock)."""
    import yaml

    from sim2real.report.study import answer_markdown, read_variant_metrics

    variants = yaml.safe_load((ROOT / "params.yaml").read_text())["variants"]
    table = answer_markdown(read_variant_metrics(ROOT / "reports" / "metrics", variants))
    assert len(table.splitlines()) == 2 + len(variants)
    assert table in (ROOT / "README.md").read_text(), (
        "README's answer table differs from reports/metrics; paste the output of "
        "`python -m sim2real.report.study reports/metrics params.yaml`:\n" + table)


def test_the_readme_recovery_table_is_the_committed_calibration():
    """The README's hidden-vs-recovered table is generated from reports/calibration.json."""
    import json

    from sim2real.report.calibration import recovery_markdown

    table = recovery_markdown(json.loads((ROOT / "reports" / "calibration.json").read_text()))
    assert table and table in (ROOT / "README.md").read_text(), (
        "README's recovery table differs from reports/calibration.json; paste the output of "
        "`python -m sim2real.report.calibration reports/calibration.json`:\n" + table)
