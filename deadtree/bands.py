"""Band names the models speak, and parsing of user band lists."""
from __future__ import annotations

from deadtree.errors import InputError

KNOWN_BANDS = ("R", "G", "B", "NIR")
SKIPPED = "-"  # in a scene's --bands: a band no model reads (red edge, thermal, a second NIR)
ALPHA = "alpha"  # in a scene's --bands: a transparency mask (0 = no image there)
_ALIASES = {"RED": "R", "GREEN": "G", "BLUE": "B", "N": "NIR", "NEARINFRARED": "NIR", "IR": "NIR"}


def normalise_band_name(name: str, for_scene: bool = False) -> str:
    key = name.strip().upper().replace("-", "").replace("_", "").replace(" ", "")
    key = _ALIASES.get(key, key)
    if key not in KNOWN_BANDS:
        extra = ", '-' for a band to leave out or alpha for a transparency mask" if for_scene else ""
        raise InputError(f"unknown band name {name!r}: use R, G, B or NIR{extra}")
    return key


def _scene_marker(part: str) -> str | None:
    """'-' or 'alpha' (also 'A'), which only a scene's band list may hold."""
    key = part.strip().lower()
    return SKIPPED if key == SKIPPED else ALPHA if key in ("alpha", "a") else None


def parse_band_list(text: str, for_scene: bool = False) -> tuple[str, ...]:
    """Parse 'R,G,B,NIR' into ('R', 'G', 'B', 'NIR'); reject repeats. For a scene's bands in file order
    (for_scene), '-' marks a band to leave unread, e.g. 'B,G,R,-,NIR' for a five-band multispectral mosaic,
    and 'alpha' a transparency mask, e.g. 'R,G,B,alpha'."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    names = tuple((for_scene and _scene_marker(part)) or normalise_band_name(part, for_scene) for part in parts)
    if names.count(ALPHA) > 1:
        raise InputError(f"--bands names more than one alpha band: {text}")
    read = [name for name in names if name not in (SKIPPED, ALPHA)]
    if not read:
        raise InputError("--bands is empty: give the scene's bands in file order, e.g. R,G,B,NIR")
    if len(set(read)) != len(read):
        raise InputError(f"--bands names a band twice: {text}")
    return names
