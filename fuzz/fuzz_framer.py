"""Fuzz StreamFramer: feed the input in pieces whose sizes come from the input itself.

Only Request, Response, KeepAlive and SipParseError may come out; no exception may escape.

    python fuzz/fuzz_framer.py CORPUS_DIR [libFuzzer flags]
"""

import sys

import atheris

with atheris.instrument_imports():
    from dialbridge.sip.message import (
        KeepAlive,
        Request,
        Response,
        SipParseError,
        StreamFramer,
    )


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    step = 1 + data[0] % 97
    payload = data[1:]
    framer = StreamFramer(max_size=4096)
    out = []
    for i in range(0, len(payload), step):
        out.extend(framer.feed(payload[i : i + step]))
    for item in out:
        assert isinstance(item, Request | Response | KeepAlive | SipParseError), type(item)
    # Fed in one piece, the same bytes give the same messages (keep-alives aside: a lone CRLF
    # at the end of a piece is reported as a pong on arrival).
    whole = StreamFramer(max_size=4096).feed(payload)
    pieces = [x for x in out if not isinstance(x, KeepAlive | SipParseError)]
    assert pieces == [x for x in whole if not isinstance(x, KeepAlive | SipParseError)]


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
