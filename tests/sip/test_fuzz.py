"""Run each atheris harness in fuzz/ for a bounded time, seeded with the RFC 4475 corpus.

A harness exits non-zero (and libFuzzer prints the crashing input) if anything other than the
parser's own error class escapes, or if a round-trip invariant breaks. See docs/sip-messages.md
for running them longer.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "fuzz"
TORTURE = Path(__file__).parent / "torture"
SECONDS_EACH = 18

HARNESSES = [
    ("fuzz_message.py", TORTURE, "*.dat"),
    ("fuzz_framer.py", TORTURE, "*.dat"),
    ("fuzz_sdp.py", FUZZ / "corpus" / "sdp", "*.sdp"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("harness", "seeds", "pattern"), HARNESSES, ids=[h[0] for h in HARNESSES])
def test_fuzz_harness_finds_no_crash_in_bounded_time(tmp_path, harness, seeds, pattern):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    seed_files = sorted(seeds.glob(pattern))
    assert seed_files, f"no seeds in {seeds}"
    for seed in seed_files:
        shutil.copy(seed, corpus / seed.name)
    result = subprocess.run(
        [
            sys.executable,
            str(FUZZ / harness),
            str(corpus),
            f"-max_total_time={SECONDS_EACH}",
            "-timeout=10",
            "-rss_limit_mb=1024",
            f"-artifact_prefix={tmp_path}/",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=SECONDS_EACH + 60,
    )
    tail = (result.stdout + result.stderr)[-3000:]
    assert result.returncode == 0, tail
    assert "Done" in result.stderr and "runs in" in result.stderr, tail
    assert not list(tmp_path.glob("crash-*")), tail
