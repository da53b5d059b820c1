"""GDAL's word that a scene's data is damaged, which it gives as a warning while it goes on reading.

A JPEG tile cut short decodes with "Premature end of JPEG file" and the rest of the tile grey: the run would
succeed with no dead trees there and no word. GDAL hands such warnings to rasterio, which logs them on the
"rasterio._err" logger; a run listens there while it reads, and refuses to publish a map with holes in it.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager

from deadtree.errors import InputError

GDAL_LOGGER = "rasterio._err"
# words of libjpeg's, libtiff's and GDAL's decoders for data that could not be decoded as written
DAMAGE_WORDS = ("premature end", "corrupt", "truncated", "not enough data", "decode error", "decoding error",
                "invalid code", "bad huffman", "read error")


class _Heard(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if any(word in text.lower() for word in DAMAGE_WORDS):
            with self._lock:
                if len(self.messages) < 10:
                    self.messages.append(text)


@contextmanager
def damage_watch():
    """Listen for GDAL's damaged-data warnings while the block runs; yields the list they are kept in."""
    heard = _Heard()
    logger = logging.getLogger(GDAL_LOGGER)
    logger.addHandler(heard)
    try:
        yield heard.messages
    finally:
        logger.removeHandler(heard)


def refuse_if_damaged(messages: list[str], name: str) -> None:
    if messages:
        first = messages[0].split(":", 1)[-1].strip() if messages[0].startswith("CPLE_") else messages[0]
        raise InputError(f"{name} is damaged: GDAL reported \"{first}\" while reading it"
                         + (f" ({len(messages)} such reports)" if len(messages) > 1 else "")
                         + "; parts of the scene could not be decoded, so no map was written")
