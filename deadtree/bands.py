"""Band names the models speak, and parsing of user band lists."""
from __future__ import annotations

from deadtree.errors import InputError

KNOWN_BANDS = ("R", "G", "B", "NIR")
_ALIASES = {"RED": "R", "GREEN": "G", "BLUE": "B", "N": "NIR", "NEARINFRARED": "NIR", "IR": "NIR"}


def normalise_band_name(name: str) -> str:
    key = name.strip().upper().replace("-", "").replace("_", "").replace(" ", "")
    key = _ALIASES.get(key, key)
    if key not in KNOWN_BANDS:
        raise InputError(f"unknown band name {name!r}: use R, G, B or NIR")
    return key


def parse_band_list(text: str) -> tuple[str, ...]:
    """Parse 'R,G,B,NIR' into ('R', 'G', 'B', 'NIR'); reject repeats."""
    names = tuple(normalise_band_name(part) for part in text.split(",") if part.strip())
    if not names:
        raise InputError("--bands is empty: give the scene's bands in file order, e.g. R,G,B,NIR")
    if len(set(names)) != len(names):
        raise InputError(f"--bands names a band twice: {text}")
    return names
