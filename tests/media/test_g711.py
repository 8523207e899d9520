"""G.711 µ-law and A-law: bit-exact tables, speech quality, concealment."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from dialbridge.media.codecs import CODECS, create_decoder, create_encoder, g711

ALL16 = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16)

# --- a scalar reference written from the G.711 decision tables -----------------------------
# Table 2a (µ-law): magnitudes on a 14-bit scale, overload at 8159. Segment s covers
# [ULAW_BOUND[s], ULAW_BOUND[s+1]) in 16 steps of 2**(s+1); the first step of segment 0 is
# [0, 1). Output values are the interval mid-points.
ULAW_BOUND = [0, 31, 95, 223, 479, 991, 2015, 4063, 8159]
# Table 1a (A-law): magnitudes on a 13-bit scale, overload at 4096. Segments 0 and 1 have a
# step of 2, segment s >= 2 a step of 2**s; mid-point outputs.
ALAW_BOUND = [0, 32, 64, 128, 256, 512, 1024, 2048, 4096]


def ulaw_ref_encode(sample: int) -> int:
    v = sample >> 2
    positive = v >= 0
    mag = v if positive else -v
    for s in range(8):
        if mag < ULAW_BOUND[s + 1]:
            q = (mag + 1) // 2 if s == 0 else (mag - ULAW_BOUND[s]) >> (s + 1)
            break
    else:
        s, q = 7, 15
    q = min(q, 15)
    return ~((0 if positive else 0x80) | (s << 4) | q) & 0xFF


def ulaw_ref_decode(code: int) -> int:
    u = ~code & 0xFF
    s, q = (u >> 4) & 7, u & 15
    mag = 2 * q if s == 0 else ULAW_BOUND[s] + q * (2 << s) + (1 << s)
    return 4 * (-mag if u & 0x80 else mag)


def alaw_ref_encode(sample: int) -> int:
    v = sample >> 3
    positive = v >= 0
    mag = v if positive else -v - 1  # the reference code's one's complement for negatives
    for s in range(8):
        if mag < ALAW_BOUND[s + 1]:
            step = 2 if s < 2 else 1 << s
            q = (mag - ALAW_BOUND[s]) // step
            break
    else:
        s, q = 7, 15
    return ((s << 4) | q) ^ (0xD5 if positive else 0x55)


def alaw_ref_decode(code: int) -> int:
    a = code ^ 0x55
    s, q = (a >> 4) & 7, a & 15
    step = 2 if s < 2 else 1 << s
    mag = ALAW_BOUND[s] + q * step + step // 2
    return 8 * (mag if a & 0x80 else -mag)


def test_ulaw_encode_table_matches_the_g711_reference_for_every_sample():
    ref = np.array([ulaw_ref_encode(int(x)) for x in ALL16], dtype=np.uint8)
    assert np.array_equal(g711.ULAW_ENCODE[ALL16.view(np.uint16)], ref)


def test_alaw_encode_table_matches_the_g711_reference_for_every_sample():
    ref = np.array([alaw_ref_encode(int(x)) for x in ALL16], dtype=np.uint8)
    assert np.array_equal(g711.ALAW_ENCODE[ALL16.view(np.uint16)], ref)


def test_decode_tables_match_the_g711_interval_midpoints():
    assert [ulaw_ref_decode(c) for c in range(256)] == g711.ULAW_DECODE.tolist()
    assert [alaw_ref_decode(c) for c in range(256)] == g711.ALAW_DECODE.tolist()


def test_tables_are_bit_exact_with_audioop():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop  # noqa: PLC0415 - gone in 3.13; present on our 3.11
    raw = ALL16.tobytes()
    assert g711.ulaw_encode(ALL16) == audioop.lin2ulaw(raw, 2)
    assert g711.alaw_encode(ALL16) == audioop.lin2alaw(raw, 2)
    assert g711.ULAW_DECODE.tobytes() == audioop.ulaw2lin(bytes(range(256)), 2)
    assert g711.ALAW_DECODE.tobytes() == audioop.alaw2lin(bytes(range(256)), 2)


@pytest.mark.parametrize(
    ("sample", "ulaw", "alaw"),
    [(0, 0xFF, 0xD5), (32767, 0x80, 0xAA), (-32768, 0x00, 0x2A), (-1, 0x7E, 0x55), (8, 0xFE, 0xD5)],
)
def test_known_code_values(sample, ulaw, alaw):
    pcm = np.array([sample], dtype=np.int16)
    assert g711.ulaw_encode(pcm) == bytes([ulaw])
    assert g711.alaw_encode(pcm) == bytes([alaw])


def test_known_decoded_values():
    assert g711.ULAW_DECODE[0xFF] == 0 and g711.ULAW_DECODE[0x80] == 32124
    assert g711.ULAW_DECODE[0x00] == -32124
    assert g711.ALAW_DECODE[0xD5] == 8 and g711.ALAW_DECODE[0xAA] == 32256
    assert g711.ALAW_DECODE[0x2A] == -32256


def test_every_code_survives_decode_then_encode():
    codes = np.arange(256, dtype=np.uint8)
    u = g711.ULAW_ENCODE[g711.ULAW_DECODE.view(np.uint16)]
    # µ-law 0x7F is "negative zero": it decodes to 0, which encodes as 0xFF.
    assert np.array_equal(u[codes != 0x7F], codes[codes != 0x7F]) and u[0x7F] == 0xFF
    a = g711.ALAW_ENCODE[g711.ALAW_DECODE.view(np.uint16)]
    assert np.array_equal(a, codes)


def snr_db(ref: np.ndarray, test: np.ndarray) -> float:
    ref = ref.astype(np.float64)
    noise = ref - test.astype(np.float64)
    return 10 * np.log10(np.sum(ref**2) / np.sum(noise**2))


@pytest.mark.parametrize("name", ["PCMU", "PCMA"])
def test_speech_round_trip_snr_is_above_35_db(name, speech_8k):
    enc, dec = create_encoder(name), create_decoder(name)
    frames = speech_8k.reshape(-1, 160)
    payloads = [enc.encode(f) for f in frames]
    assert all(len(p) == 160 for p in payloads)
    out = np.concatenate([dec.decode(p) for p in payloads])
    # Measured on the espeak-ng fixture (RMS -22 dBFS): µ-law 37.2 dB, A-law 37.4 dB; G.711 theoretical
    # SNR for speech-like signals at a nominal level is 38 dB, so 35 leaves room for level changes.
    assert snr_db(speech_8k, out) > 35.0


def test_codec_info_for_g711():
    assert CODECS["PCMU"].static_payload_type == 0 and CODECS["PCMA"].static_payload_type == 8
    assert CODECS["PCMU"].samples_per_frame == 160 == CODECS["PCMA"].rtp_samples_per_frame


def test_g711_concealment_repeats_the_last_frame_attenuated_then_goes_silent():
    dec = create_decoder("PCMU")
    assert not dec.conceal().any()  # nothing received yet: silence
    frame = (np.arange(160, dtype=np.int16) - 80) * 100
    dec.decode(g711.ulaw_encode(frame))
    first = dec.conceal()
    last = g711.ulaw_decode(g711.ulaw_encode(frame))
    assert np.array_equal(first, last >> 1)
    second = dec.conceal()
    assert np.abs(second).max() < np.abs(first).max()
    dec.conceal()
    assert not dec.conceal().any()
    dec.decode(g711.ulaw_encode(frame))
    assert dec.conceal().any()  # a good frame resets the run


def test_encoder_refuses_float_input():
    with pytest.raises(TypeError):
        create_encoder("PCMA").encode(np.zeros(160))


def test_empty_payload_is_treated_as_a_lost_packet():
    dec = create_decoder("PCMA")
    frame = dec.decode(g711.alaw_encode(np.full(160, 1000, dtype=np.int16)))
    out = dec.decode(b"")
    assert len(out) == 160 and np.array_equal(out, frame >> 1)
