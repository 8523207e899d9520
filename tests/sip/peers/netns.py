"""Run commands in a private network namespace whose only interface is `lo` (stack-notes §6).

Nothing started this way can reach any other host, whatever it is configured to do. Peers in
the namespace only see each other (its 127.0.0.1 is not the host's), so either everything under
test goes in together, or the whole test run does:

    unshare -n sh -c 'ip link set lo up && exec .venv/bin/pytest -m peers tests/sip/test_interop_*.py'

(root, or a user namespace, is needed for `unshare -n`).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence

UNSHARE = shutil.which("unshare")
IP = shutil.which("ip")


def private_netns_argv(argv: Sequence[str]) -> list[str]:
    """`argv` wrapped so it runs in a fresh network namespace with `lo` up."""
    if UNSHARE is None or IP is None:
        raise RuntimeError("unshare (util-linux) and ip (iproute2) are needed")
    return [UNSHARE, "-n", "sh", "-c", f'{IP} link set lo up && exec "$@"', "netns", *argv]
