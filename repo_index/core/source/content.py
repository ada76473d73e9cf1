"""What a file's bytes are: indexable text, or a skip reason (binary, not UTF-8, empty,
minified, a Git LFS pointer); and the text they decode to."""

from __future__ import annotations

import codecs

BINARY_SNIFF_BYTES = 8192
MINIFIED_AVG_LINE = 300  # characters per line beyond which text is machine-written
LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/"
LFS_POINTER_MAX_BYTES = 1024  # git-lfs itself treats larger files as content
# UTF-32 first: its little-endian BOM begins with UTF-16's.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def _encoding(data: bytes) -> str:
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name
    return "utf-8-sig"


def classify_bytes(data: bytes) -> str | None:
    """A skip reason for file content, or None when it is indexable text.

    Text is UTF-8 (a BOM is fine), or UTF-16/32 with a BOM, as Windows tools write it.
    """
    if data.startswith(LFS_POINTER_PREFIX) and len(data) <= LFS_POINTER_MAX_BYTES:
        return "lfs_pointer"
    encoding = _encoding(data)
    if encoding == "utf-8-sig" and b"\x00" in data[:BINARY_SNIFF_BYTES]:
        return "binary"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        return "not_utf8" if encoding == "utf-8-sig" else "binary"
    if "\x00" in text:
        return "binary"
    if not text.strip():
        return "empty"
    lines = text.count("\n") + 1
    if len(text) / lines > MINIFIED_AVG_LINE and len(text) > 4 * MINIFIED_AVG_LINE:
        return "minified_or_generated"
    return None


def decode_source(data: bytes) -> str:
    """Text with any BOM dropped and CRLF / lone CR line ends made LF."""
    text = data.decode(_encoding(data))
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text
