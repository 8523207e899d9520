"""Fuzz the SDP parser and the offer/answer helper.

SdpParseError and OfferAnswerError (from create_answer) are the only allowed failures; what
parses must build and parse again to the same description, and an answer we made must negotiate.

    python fuzz/fuzz_sdp.py CORPUS_DIR [libFuzzer flags]
"""

import sys

import atheris

with atheris.instrument_imports():
    from dialbridge.sip.sdp import (
        PCMA,
        PCMU,
        LocalMedia,
        OfferAnswerError,
        SdpParseError,
        create_answer,
        negotiate,
        parse_sdp,
    )

LOCAL = LocalMedia(address="127.0.0.1", port=40000)
PSTN = LocalMedia(address="127.0.0.1", port=40002, codecs=(PCMA, PCMU), extmap_uris=())


def TestOneInput(data: bytes) -> None:
    try:
        sdp = parse_sdp(data)
    except SdpParseError:
        return
    assert parse_sdp(sdp.to_bytes()) == sdp, "SDP changed on round trip"
    for local in (LOCAL, PSTN):
        try:
            answer = create_answer(sdp, local)
        except OfferAnswerError:
            continue
        # An answer we accepted must negotiate, from both ends.
        parsed = parse_sdp(answer.to_bytes())
        ours = negotiate(sdp, parsed, local_is_offerer=False)
        theirs = negotiate(sdp, parsed, local_is_offerer=True)
        assert ours.payload_type == theirs.payload_type


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
