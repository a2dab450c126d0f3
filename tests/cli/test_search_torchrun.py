"""``torchrun --nproc-per-node 2 -m lcsc search`` (gloo, 127.0.0.1) writes what one process does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lcsc.search.distributed import local_launcher
from tests.cli.conftest import OBJECTIVE


def test_torchrun_search_equals_one_process(recorded: Path, tmp_path: Path) -> None:
    (tmp_path / "obj.py").write_text(OBJECTIVE)
    common = ["search", str(recorded), "--objective", "obj:make", "--objective-arg"]
    common += ["target=0.05", "--method", "evolutionary", "--budget", "30", "--seed", "2"]
    env_path = {"cwd": tmp_path, "capture_output": True, "text": True, "timeout": 300}
    one = subprocess.run([sys.executable, "-m", "lcsc", *common, "--workdir", "one"], **env_path)
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [*local_launcher(2), "-m", "lcsc", *common, "--workdir", "two"], **env_path
    )
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("best score") == 1  # rank 0 alone reports and writes

    def records(name: str) -> list[tuple[list[float], float]]:
        lines = (tmp_path / name / "history.jsonl").read_text().splitlines()
        return [(r["coefficients"], r["score"]) for r in map(json.loads, lines)]

    assert records("two") == records("one") and len(records("one")) == 30
    best = [
        json.loads((tmp_path / n / "best_coefficients.json").read_text()) for n in ("one", "two")
    ]
    assert (
        best[0]["coefficients"] == best[1]["coefficients"] and best[0]["score"] == best[1]["score"]
    )
    assert (tmp_path / "two" / "best.safetensors").read_bytes() == (
        tmp_path / "one" / "best.safetensors"
    ).read_bytes()
