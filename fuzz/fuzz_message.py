"""Fuzz parse_message: SipParseError is the only allowed failure, and whatever parses must
serialise and parse again to the same message.

    python fuzz/fuzz_message.py CORPUS_DIR [libFuzzer flags, e.g. -max_total_time=600]
"""

import sys

import atheris

with atheris.instrument_imports():
    from dialbridge.sip.message import SipParseError, make_response, parse_message


def TestOneInput(data: bytes) -> None:
    try:
        message = parse_message(data)
    except SipParseError:
        return
    # Typed views were validated by the parser; using them must not fail.
    _ = (message.call_id, message.cseq, message.vias, message.from_addr, message.to_addr)
    _ = message.contacts
    again = parse_message(message.to_bytes())
    assert again.body == message.body, "body changed on round trip"
    # Serialising writes one Content-Length (the body's), where the first one was: repeated
    # Content-Length headers that agree are accepted on input but not repeated on output.
    expected = []
    seen_length = False
    for n, v in message.headers.items():
        if n == "Content-Length":
            if seen_length:
                continue
            seen_length = True
            v = str(len(message.body))
        expected.append((n, v))
    assert again.headers.items()[: len(expected)] == expected, "headers changed on round trip"
    if hasattr(message, "method"):
        response = make_response(message, 400, to_tag="t")
        parse_message(response.to_bytes())


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
