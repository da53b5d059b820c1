"""Band names the models speak, and parsing of user band lists."""
from __future__ import annotations

from deadtree.errors import InputError

KNOWN_BANDS = ("R", "G", "B", "NIR")
SKIPPED = "-"  # in a scene's --bands: a band no model reads (red edge, thermal, a second NIR)
_ALIASES = {"RED": "R", "GREEN": "G", "BLUE": "B", "N": "NIR", "NEARINFRARED": "NIR", "IR": "NIR"}


def normalise_band_name(name: str) -> str:
    key = name.strip().upper().replace("-", "").replace("_", "").replace(" ", "")
    key = _ALIASES.get(key, key)
    if key not in KNOWN_BANDS:
        raise InputError(f"unknown band name {name!r}: use R, G, B or NIR")
    return key


def parse_band_list(text: str, allow_skipped: bool = False) -> tuple[str, ...]:
    """Parse 'R,G,B,NIR' into ('R', 'G', 'B', 'NIR'); reject repeats. With allow_skipped (a scene's bands in
    file order), '-' marks a band to leave unread, e.g. 'B,G,R,-,NIR' for a five-band multispectral mosaic."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    names = tuple(SKIPPED if allow_skipped and part == SKIPPED else normalise_band_name(part) for part in parts)
    read = [name for name in names if name != SKIPPED]
    if not read:
        raise InputError("--bands is empty: give the scene's bands in file order, e.g. R,G,B,NIR")
    if len(set(read)) != len(read):
        raise InputError(f"--bands names a band twice: {text}")
    return names
