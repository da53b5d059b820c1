"""An ONNX file's metadata_props, read without the onnx package.

`segment` reads the metadata of every shipped model to find its defaults. Through onnx that meant importing
the package (0.24 s) and parsing each whole protobuf, weights included (0.26 s for twelve models), before the
first tile. The properties are a top-level field of the ModelProto message (field 14, entries of two strings),
so a walk over the top-level fields that steps over the graph's bytes finds them in a few milliseconds.
"""
from __future__ import annotations

import mmap
from pathlib import Path

_METADATA_PROPS = 14  # ModelProto.metadata_props
_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


class NotProtobuf(ValueError):
    """The bytes do not parse as a protobuf message."""


def metadata_props(path: Path | str) -> dict[str, str]:
    """The key -> value metadata of an ONNX model file (later duplicates win, as in onnx's own reading)."""
    with open(path, "rb") as handle:
        if Path(path).stat().st_size == 0:
            raise NotProtobuf("empty file")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            props = {}
            for field, value in _fields(data, 0, len(data)):
                if field == _METADATA_PROPS:
                    entry = dict(_fields(data, *value))
                    key, text = entry.get(1, (0, 0)), entry.get(2, (0, 0))
                    props[_text(data, key)] = _text(data, text)
            return props


def _fields(data, start: int, end: int):
    """(field number, value) of a message's fields in data[start:end]: an int for varints and fixed-width
    numbers, a (start, end) span for length-delimited fields."""
    pos = start
    while pos < end:
        key, pos = _varint(data, pos, end)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise NotProtobuf(f"field number 0 at byte {pos}")
        if wire == _VARINT:
            value, pos = _varint(data, pos, end)
        elif wire == _LENGTH_DELIMITED:
            length, pos = _varint(data, pos, end)
            value, pos = (pos, pos + length), pos + length
        elif wire in (_FIXED64, _FIXED32):
            size = 8 if wire == _FIXED64 else 4
            value, pos = int.from_bytes(data[pos:pos + size], "little"), pos + size
        else:
            raise NotProtobuf(f"wire type {wire} at byte {pos}")
        if pos > end:
            raise NotProtobuf("truncated: a field runs past the end")
        yield field, value


def _varint(data, pos: int, end: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= end or shift > 63:
            raise NotProtobuf("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _text(data, span: tuple[int, int]) -> str:
    start, end = span
    try:
        return bytes(data[start:end]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotProtobuf(f"a metadata string is not UTF-8: {exc}") from exc
