"""Opus (RFC 6716, RTP payload RFC 7587) through libopus, called with ctypes.

Why not ``av.CodecContext``: PyAV's FFmpeg ``libopus`` *encoder* accepts 8 kHz s16 input, but
FFmpeg's ``libopus`` *decoder* always outputs 48 kHz (it ignores ``sample_rate``), offers no
in-band FEC and no packet-loss concealment call. The libopus shared library that the PyAV wheel
bundles (``av.libs/libopus-*.so``, libopus 1.6.x) exports the full C API, so we call it directly:
8 kHz in, 8 kHz out, PLC (``opus_decode(NULL)``), FEC (``decode_fec=1`` on the next packet), and
ctypes releases the GIL during each call. No extra dependency: if the wheel layout ever changes,
the system ``libopus.so.0`` (Debian ``libopus0``) is used instead. Measurements are in
docs/media-primitives.md.

RTP facts (RFC 7587): the RTP clock is always 48 kHz, whatever rate libopus runs at, so a
20 ms packet advances the timestamp by 960; SDP says ``opus/48000/2`` even for mono content
(§7). Decoding to one channel down-mixes a stereo stream.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import importlib.util
import os
import threading

import numpy as np

from . import CODECS, CodecError, CodecInfo, PayloadError

__all__ = [
    "OPUS_APPLICATION_AUDIO",
    "OPUS_APPLICATION_RESTRICTED_LOWDELAY",
    "OPUS_APPLICATION_VOIP",
    "OpusDecoder",
    "OpusEncoder",
    "libopus_path",
    "libopus_version",
    "packet_samples",
]

# opus_defines.h
OPUS_OK = 0
OPUS_APPLICATION_VOIP = 2048
OPUS_APPLICATION_AUDIO = 2049
OPUS_APPLICATION_RESTRICTED_LOWDELAY = 2051
OPUS_SET_BITRATE_REQUEST = 4002
OPUS_SET_MAX_BANDWIDTH_REQUEST = 4004
OPUS_SET_VBR_REQUEST = 4006
OPUS_SET_COMPLEXITY_REQUEST = 4010
OPUS_GET_COMPLEXITY_REQUEST = 4011
OPUS_SET_INBAND_FEC_REQUEST = 4012
OPUS_GET_INBAND_FEC_REQUEST = 4013
OPUS_SET_PACKET_LOSS_PERC_REQUEST = 4014
OPUS_SET_DTX_REQUEST = 4016
OPUS_SET_SIGNAL_REQUEST = 4024
OPUS_RESET_STATE = 4028
OPUS_GET_LAST_PACKET_DURATION_REQUEST = 4039
OPUS_SIGNAL_VOICE = 3001
OPUS_BANDWIDTH_NARROWBAND = 1101
OPUS_BANDWIDTH_WIDEBAND = 1103
OPUS_BANDWIDTH_FULLBAND = 1105

MAX_PACKET_BYTES = 1275 * 3  # RFC 6716 §3.4: at most 1275 bytes per frame, 3 frames max here
MAX_FRAME_MS = 120  # RFC 6716 §2: a packet carries at most 120 ms
LIBOPUS_RATES = (8000, 12000, 16000, 24000, 48000)
_string_at = ctypes.string_at

_lib: ctypes.CDLL | None = None
_lib_path: str | None = None
_lib_lock = threading.Lock()


def _candidate_paths() -> list[str]:
    paths = []
    env = os.environ.get("DIALBRIDGE_LIBOPUS")
    if env:
        paths.append(env)
    spec = importlib.util.find_spec("av")
    if spec is not None and spec.origin:
        site = os.path.dirname(os.path.dirname(spec.origin))
        paths += sorted(glob.glob(os.path.join(site, "av.libs", "libopus-*.so*")))
    system = ctypes.util.find_library("opus")
    if system:
        paths.append(system)
    return paths


def _load() -> ctypes.CDLL:
    global _lib, _lib_path
    if _lib is not None:
        return _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        errors = []
        for path in _candidate_paths():
            try:
                lib = ctypes.CDLL(path)
            except OSError as exc:
                errors.append(f"{path}: {exc}")
                continue
            _declare(lib)
            _lib, _lib_path = lib, path
            return lib
        raise CodecError("no usable libopus found: " + ("; ".join(errors) or "none on the path"))


def _declare(lib: ctypes.CDLL) -> None:
    c_int, c_int32, c_void_p, c_char_p = (
        ctypes.c_int,
        ctypes.c_int32,
        ctypes.c_void_p,
        ctypes.c_char_p,
    )
    err_p = ctypes.POINTER(c_int)
    lib.opus_get_version_string.restype = c_char_p
    lib.opus_encoder_create.argtypes = [c_int32, c_int, c_int, err_p]
    lib.opus_encoder_create.restype = c_void_p
    lib.opus_encoder_destroy.argtypes = [c_void_p]
    lib.opus_encoder_destroy.restype = None
    # opus_encode(st, const opus_int16 *pcm, int frame_size, unsigned char *data, opus_int32 max)
    lib.opus_encode.argtypes = [c_void_p, c_void_p, c_int, c_void_p, c_int32]
    lib.opus_encode.restype = c_int32
    lib.opus_encoder_ctl.restype = c_int
    lib.opus_decoder_create.argtypes = [c_int32, c_int, err_p]
    lib.opus_decoder_create.restype = c_void_p
    lib.opus_decoder_destroy.argtypes = [c_void_p]
    lib.opus_decoder_destroy.restype = None
    # opus_decode(st, const unsigned char *data, opus_int32 len, opus_int16 *pcm, int frame_size,
    #             int decode_fec)
    lib.opus_decode.argtypes = [c_void_p, c_char_p, c_int32, c_void_p, c_int, c_int]
    lib.opus_decode.restype = c_int
    lib.opus_decoder_ctl.restype = c_int
    lib.opus_packet_get_nb_samples.argtypes = [c_char_p, c_int32, c_int32]
    lib.opus_packet_get_nb_samples.restype = c_int
    lib.opus_strerror.argtypes = [c_int]
    lib.opus_strerror.restype = c_char_p


def libopus_path() -> str:
    _load()
    assert _lib_path is not None
    return _lib_path


def libopus_version() -> str:
    return _load().opus_get_version_string().decode()


def _check(lib: ctypes.CDLL, code: int, what: str) -> int:
    if code < 0:
        raise CodecError(f"{what}: {lib.opus_strerror(code).decode()} ({code})")
    return code


def packet_samples(payload: bytes, rate: int = 48000) -> int:
    """Number of samples (at ``rate``) carried by an Opus packet (RFC 6716 §3.1 TOC)."""
    lib = _load()
    return _check(lib, lib.opus_packet_get_nb_samples(payload, len(payload), rate), "packet")


def _codec_info(pcm_rate: int) -> CodecInfo:
    """The Opus CodecInfo for frames at ``pcm_rate`` (the RTP clock stays 48 kHz, RFC 7587)."""
    if pcm_rate not in LIBOPUS_RATES:
        raise ValueError(f"libopus runs at {LIBOPUS_RATES}, not {pcm_rate}")
    info = CODECS["opus"]
    return info if pcm_rate == info.pcm_rate else CodecInfo("opus", 48000, 2, pcm_rate)


class OpusEncoder:
    """One libopus encoder producing one 20 ms packet per ``encode`` call.

    Defaults are chosen for a PSTN leg: 8 kHz mono input (SILK narrowband), VoIP application,
    voice signal, complexity 5, 32 kbit/s VBR, in-band FEC on (tuned for ``packet_loss_perc``
    5 %), DTX off (Jigasi treats 10 s without RTP as a dead call, so we never go quiet).
    FEC takes its bits from the primary encoding, so below ~32 kbit/s the loss-free PESQ drops
    under 4.0 (24 kbit/s: 4.09 clean, 3.81 at 3 % loss; 32 kbit/s: 4.32 / 4.06; see the doc).
    """

    __slots__ = (
        "info",
        "pcm_rate",
        "samples_per_frame",
        "_lib",
        "_st",
        "_out",
        "_in",
        "_in_addr",
        "_encode",
        "__weakref__",
    )

    def __init__(
        self,
        pcm_rate: int = 8000,
        bitrate: int = 32000,
        complexity: int = 5,
        fec: bool = True,
        packet_loss_perc: int = 5,
        dtx: bool = False,
        application: int = OPUS_APPLICATION_VOIP,
        channels: int = 1,
    ) -> None:
        lib = _load()
        self.info = _codec_info(pcm_rate)
        self.pcm_rate = pcm_rate
        self.samples_per_frame = pcm_rate // 50
        err = ctypes.c_int(0)
        st = lib.opus_encoder_create(pcm_rate, channels, application, ctypes.byref(err))
        _check(lib, err.value, "opus_encoder_create")
        if not st:
            raise CodecError("opus_encoder_create returned NULL")
        self._lib, self._st = lib, st
        self._out = ctypes.create_string_buffer(MAX_PACKET_BYTES)
        # Input frames are copied into this buffer, whose address is known once: cheaper than
        # asking numpy for each frame's address (``ndarray.ctypes`` builds an object per call).
        self._in = np.zeros(self.samples_per_frame, dtype=np.int16)
        self._in_addr = self._in.ctypes.data
        self._encode = lib.opus_encode
        self._ctl(OPUS_SET_BITRATE_REQUEST, bitrate)
        self._ctl(OPUS_SET_COMPLEXITY_REQUEST, complexity)
        self._ctl(OPUS_SET_INBAND_FEC_REQUEST, int(fec))
        self._ctl(OPUS_SET_PACKET_LOSS_PERC_REQUEST, packet_loss_perc)
        self._ctl(OPUS_SET_DTX_REQUEST, int(dtx))
        self._ctl(OPUS_SET_SIGNAL_REQUEST, OPUS_SIGNAL_VOICE)

    def _ctl(self, request: int, value: int) -> None:
        _check(
            self._lib,
            self._lib.opus_encoder_ctl(
                ctypes.c_void_p(self._st), ctypes.c_int(request), ctypes.c_int(value)
            ),
            f"opus_encoder_ctl({request})",
        )

    def get_ctl(self, request: int) -> int:
        """Read an ``OPUS_GET_*`` value (for tests and diagnostics)."""
        value = ctypes.c_int32(0)
        _check(
            self._lib,
            self._lib.opus_encoder_ctl(
                ctypes.c_void_p(self._st), ctypes.c_int(request), ctypes.byref(value)
            ),
            f"opus_encoder_ctl({request})",
        )
        return value.value

    def set_bitrate(self, bitrate: int) -> None:
        self._ctl(OPUS_SET_BITRATE_REQUEST, bitrate)

    def set_complexity(self, complexity: int) -> None:
        """0..10; lower it when the media process runs short of CPU (1 halves the encode)."""
        self._ctl(OPUS_SET_COMPLEXITY_REQUEST, max(0, min(10, complexity)))

    def set_fec(self, enabled: bool) -> None:
        self._ctl(OPUS_SET_INBAND_FEC_REQUEST, int(enabled))

    def set_packet_loss_perc(self, percent: int) -> None:
        """Feed back the loss the peer reports (RTCP) so FEC strength follows it."""
        self._ctl(OPUS_SET_PACKET_LOSS_PERC_REQUEST, max(0, min(100, percent)))

    def encode(self, pcm: np.ndarray) -> bytes:
        if pcm.dtype != np.int16 or pcm.shape != (self.samples_per_frame,):
            raise ValueError(f"Opus encoder takes {self.samples_per_frame} int16 samples")
        self._in[:] = pcm
        n = self._encode(
            self._st, self._in_addr, self.samples_per_frame, self._out, MAX_PACKET_BYTES
        )
        if n < 0:
            _check(self._lib, n, "opus_encode")
        return _string_at(self._out, n)

    def __del__(self) -> None:
        st = getattr(self, "_st", None)
        if st:
            self._lib.opus_encoder_destroy(st)
            self._st = None


class OpusDecoder:
    """One libopus decoder per received SSRC (decoder state is per stream).

    ``decode`` returns all samples of the packet at ``pcm_rate`` (160 for 20 ms at 8 kHz).
    ``conceal(next_payload)`` returns one frame for a lost packet: with ``next_payload`` the
    frame is rebuilt from the in-band FEC (LBRR) data of the following packet when it has any
    (RFC 6716 §2.1.7; libopus falls back to PLC when it has none); without it, libopus PLC.
    """

    __slots__ = (
        "info",
        "pcm_rate",
        "samples_per_frame",
        "_lib",
        "_st",
        "_buf",
        "_buf_addr",
        "_decode",
        "concealed_frames",
        "fec_frames",
        "__weakref__",
    )

    def __init__(self, pcm_rate: int = 8000, channels: int = 1) -> None:
        if channels != 1:
            raise ValueError("the engine decodes Opus to mono")
        lib = _load()
        self.info = _codec_info(pcm_rate)
        self.pcm_rate = pcm_rate
        self.samples_per_frame = pcm_rate // 50
        err = ctypes.c_int(0)
        st = lib.opus_decoder_create(pcm_rate, channels, ctypes.byref(err))
        _check(lib, err.value, "opus_decoder_create")
        if not st:
            raise CodecError("opus_decoder_create returned NULL")
        self._lib, self._st = lib, st
        self._buf = np.zeros(pcm_rate * MAX_FRAME_MS // 1000, dtype=np.int16)
        self._buf_addr = self._buf.ctypes.data
        self._decode = lib.opus_decode
        self.concealed_frames = 0
        self.fec_frames = 0

    def decode(self, payload: bytes) -> np.ndarray:
        """Decode one packet. A corrupt packet raises PayloadError (treat it as lost)."""
        if not payload:
            return self.conceal()
        if type(payload) is not bytes:  # ctypes c_char_p takes bytes only (not memoryview)
            payload = bytes(payload)
        n = self._decode(self._st, payload, len(payload), self._buf_addr, len(self._buf), 0)
        if n < 0:
            raise PayloadError(f"opus_decode: {self._lib.opus_strerror(n).decode()} ({n})")
        return self._buf[:n].copy()

    def conceal(self, next_payload: bytes | None = None, samples: int | None = None) -> np.ndarray:
        n = samples or self.samples_per_frame
        lib = self._lib
        if next_payload:
            if type(next_payload) is not bytes:
                next_payload = bytes(next_payload)
            got = lib.opus_decode(self._st, next_payload, len(next_payload), self._buf_addr, n, 1)
            if got > 0:
                self.fec_frames += 1
                return self._buf[:got].copy()
        got = lib.opus_decode(self._st, None, 0, self._buf_addr, n, 0)
        if got < 0:
            _check(lib, got, "opus_decode(PLC)")
        self.concealed_frames += 1
        return self._buf[:got].copy()

    def reset(self) -> None:
        """Forget the stream state (SSRC change, long gap)."""
        self._lib.opus_decoder_ctl(ctypes.c_void_p(self._st), ctypes.c_int(OPUS_RESET_STATE))

    def __del__(self) -> None:
        st = getattr(self, "_st", None)
        if st:
            self._lib.opus_decoder_destroy(st)
            self._st = None
