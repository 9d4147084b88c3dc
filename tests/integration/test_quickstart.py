"""``make run``'s command: the quickstart shows batches from all four sources."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from pumphouse.devstack import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_with_sample_orders_reaches_every_handler(tmp_path: Path) -> None:
    text = (ROOT / "examples" / "quickstart.yaml").read_text()
    text = text.replace("127.0.0.1:9400", f"127.0.0.1:{free_port()}")
    text = text.replace("CodeUri: quickstart", f"CodeUri: {ROOT / 'examples' / 'quickstart'}")
    config = tmp_path / "quickstart.yaml"
    config.write_text(text)
    process = subprocess.Popen(
        [sys.executable, "-m", "pumphouse", "dev", "-c", str(config), "--produce", "5"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    reader = threading.Thread(
        target=lambda: output.extend(iter(process.stdout.readline, "")),  # type: ignore[union-attr]  # a pipe
        daemon=True,
    )
    reader.start()
    wanted = ("sqs: ", "kinesis: ", "dynamodb: INSERT order-", "kafka: ")
    try:
        deadline = time.monotonic() + 150
        while not all(word in "".join(output) for word in wanted):
            assert process.poll() is None, "".join(output[-60:])
            assert time.monotonic() < deadline, "".join(output[-60:])
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, "".join(output[-60:])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=5)
    assert "sample send failed" not in "".join(output)
