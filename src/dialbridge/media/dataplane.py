"""The optional C data plane (``dialbridge.media._dataplane``, built from ``_native/``).

The media engine's algorithms are written in Python (jitter.py, mixer.py, levels.py,
session.py, bridge.py) and run there for every leg. When the extension is built, the steady
state of a bridged call -- the packets of the negotiated codec from the latched source, the
jitter buffers and N-loudest mix, encoding, the RFC 6464 byte and the send -- runs in C
instead, on the same session state, with the same rules (the C code is a port; the tests run
both, see docs/media-engine.md "Data plane"). Everything else (IVR prompts, DTMF, RTCP,
latching, relay, re-INVITEs) stays in Python.

``native()`` returns the configured module, or None when it is not built or when
``DIALBRIDGE_MEDIA_NATIVE=0`` turns it off (pure-Python engine).
"""

from __future__ import annotations

import ctypes
import os
import threading
from types import ModuleType

__all__ = ["native"]

_lock = threading.Lock()
_state: dict[str, ModuleType | None] = {}


def _configure(module: ModuleType) -> None:
    from dialbridge.media.codecs import g711

    module.set_g711_tables(
        g711.ULAW_ENCODE.tobytes(),
        g711.ULAW_DECODE.tobytes(),
        g711.ALAW_ENCODE.tobytes(),
        g711.ALAW_DECODE.tobytes(),
    )
    try:
        from dialbridge.media.codecs import opus

        lib = opus._load()
    except Exception:  # no libopus: Opus legs keep the Python path
        return
    address = [
        ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
        for name in ("opus_decoder_create", "opus_decoder_destroy", "opus_decode", "opus_encode")
    ]
    module.set_opus(*address)


def native() -> ModuleType | None:
    """The C data plane, configured, or None (not built, or turned off by the environment)."""
    if os.environ.get("DIALBRIDGE_MEDIA_NATIVE", "1").lower() in ("0", "off", "no", "false"):
        return None
    with _lock:
        if "module" not in _state:
            try:
                from dialbridge.media import _dataplane
            except ImportError:
                _state["module"] = None
            else:
                _configure(_dataplane)
                _state["module"] = _dataplane
        return _state["module"]
