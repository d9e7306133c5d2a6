"""The layering of docs/ARCHITECTURE.md holds: lower layers never import higher ones, nothing imports the
benchmarks, and the served app never reads the test folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept():
    """import-linter checks every import, direct and indirect, against the contracts in pyproject.toml."""
    linter = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(linter), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "Lower layers never import higher ones KEPT" in out.stdout
    assert "Nothing imports the benchmarks KEPT" in out.stdout


def test_product_code_never_reads_the_tests_folder():
    product = [p for pkg in ("agent", "catalog", "cli", "config", "fusion", "indexing", "llm_client", "loaders",
                             "promptlab", "retrieval", "storage", "tools", "vectorstore", "web")
               for p in (ROOT / pkg).rglob("*.py")] + [ROOT / "app.py"]
    readers = [str(p.relative_to(ROOT)) for p in product if '"tests"' in p.read_text() or "tests/" in p.read_text()]
    assert product and readers == []
