"""File names as they appear in messages: on one line and safe for a terminal.

A file name may hold a newline, an escape sequence or bytes that are not UTF-8 (Python keeps those as
surrogates); printed raw, an error would span two lines, recolour the terminal or fail to encode.
`printable` writes them as backslash escapes; `load_study` applies it to every error it raises and the
CLI to every line it prints.
"""

from __future__ import annotations

#: Line breaks besides the control characters (`str.splitlines` splits at these too).
_LINE_BREAKS = (0x2028, 0x2029)


def printable(text: str) -> str:
    """`text` with control characters escaped (\\n, \\t, \\x1b), undecodable file-name bytes as \\xNN."""
    out = []
    for ch in str(text):
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte of a file name that was not valid UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch in "\n\r\t":
            out.append(repr(ch)[1:-1])
        elif code < 0x20 or 0x7F <= code < 0xA0:
            out.append(f"\\x{code:02x}")
        elif code in _LINE_BREAKS or 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def needs_escaping(text: str) -> bool:
    return printable(text) != text


__all__ = ["needs_escaping", "printable"]
