"""The README's examples work as written, in a project of the reader's own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def python_block_after(heading: str) -> str:
    text = (ROOT / "README.md").read_text().split(heading, 1)[1]
    return text.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_testing_example_runs_with_pytest_asyncio_in_its_default_mode(
    tmp_path: Path,
) -> None:
    orders = tmp_path / "handlers" / "orders"
    orders.mkdir(parents=True)
    (orders / "orders.py").write_text(
        'def handler(event, context):\n    return {"batchItemFailures": []}\n'
    )
    (tmp_path / "test_orders.py").write_text(python_block_after("## Testing your handlers"))
    # The reader's own pytest configuration: nothing set, so pytest-asyncio is strict.
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_orders.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
