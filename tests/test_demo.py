"""The README's first command: `dialbridge demo` runs on embedded defaults and succeeds."""

from __future__ import annotations

import os
import subprocess
import sys


def test_demo_runs_to_success(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALBRIDGE_")}
    env["HOME"] = str(tmp_path)  # nothing outside a temporary directory is touched
    result = subprocess.run(
        [sys.executable, "-m", "dialbridge.cli", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout
    assert "demo finished" in result.stdout
