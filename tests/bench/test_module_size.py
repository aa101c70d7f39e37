"""The house stays walkable: no module of bench/ or methods/ grows past 450 lines (split it along its
concepts instead, as bench/commands/ and bench/suite_files.py were)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 450


def test_no_module_over_the_limit():
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for package in ("bench", "methods")
        for path in (ROOT / package).rglob("*.py")
    }
    assert len(sizes) > 40  # the walk found the packages
    assert {name: lines for name, lines in sizes.items() if lines > LIMIT} == {}
