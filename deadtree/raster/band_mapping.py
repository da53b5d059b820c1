"""Which file band holds which colour, read from the file's tags where they can be trusted."""
from __future__ import annotations

import logging

import numpy as np
from rasterio.enums import ColorInterp

from deadtree.bands import ALPHA, SKIPPED, normalise_band_name
from deadtree.errors import InputError

log = logging.getLogger("deadtree")

_COLOR_TAGS = {ColorInterp.red: "R", ColorInterp.green: "G", ColorInterp.blue: "B"}
_NIR_WORDS = ("nir", "near infrared", "near-infrared", "infrared")


def tagged_band_names(colorinterp, descriptions) -> list[str | None]:
    """Names from colour interpretation or band description; 'alpha' for alpha, None for untagged."""
    names: list[str | None] = []
    for interp, description in zip(colorinterp, descriptions):
        text = (description or "").strip().lower()
        if interp in _COLOR_TAGS:
            names.append(_COLOR_TAGS[interp])
        elif any(word == text or text.startswith(word) for word in _NIR_WORDS):
            names.append("NIR")
        elif interp == ColorInterp.alpha:
            names.append("alpha")
        else:
            names.append(None)
    return names


MASK_EXTREMES_SHARE = 0.9


def looks_like_mask(sample: np.ndarray) -> bool:
    """A transparency mask holds 0 and an 'opaque' value almost everywhere, with at most a soft edge of values
    between them (0, 64, 128, 192, 255); NIR holds many values, spread over its range."""
    values, counts = np.unique(sample, return_counts=True)
    if len(values) == 1 or (len(values) == 2 and values[0] == 0):
        return True
    extremes = counts[(values == 0) | (values == values[-1])].sum()
    return bool(values[0] == 0 and extremes >= MASK_EXTREMES_SHARE * sample.size)


def untagged_fourth_band(names: list[str | None]) -> bool:
    """R, G, B and a fourth band with no tag ("undefined"), as gdalwarp, rasterio and many NAIP copies write."""
    return len(names) == 4 and names[:3] == ["R", "G", "B"] and names[3] is None


def map_bands(names: list[str | None], alpha_samples: dict[int, np.ndarray], override: tuple[str, ...] | None):
    """Return ({band name: 1-based file index}, 1-based alpha-mask index or None).

    A fourth band tagged alpha after R, G, B whose values are not a mask is NIR: NAIP files are often written
    that way, and reading it as a mask would silently cut the image away.
    """
    count = len(names)
    if override:
        if len(override) != count:
            raise InputError(f"--bands names {len(override)} bands but the scene has {count}")
        alpha = override.index(ALPHA) + 1 if ALPHA in override else None
        return {name: i + 1 for i, name in enumerate(override) if name not in (SKIPPED, ALPHA)}, alpha

    names = list(names)
    alpha_index = None
    if untagged_fourth_band(names):
        if looks_like_mask(alpha_samples[4]):
            log.info("band 4 is untagged and holds a transparency mask: reading it as one (--bands overrides)")
            names[3] = "alpha"
        else:
            log.info("band 4 is untagged and holds image values: reading it as NIR (--bands overrides)")
            names[3] = "NIR"
    for i, name in enumerate(names):
        if name != "alpha":
            continue
        rgb_before = names[:3] == ["R", "G", "B"] and i == 3
        if rgb_before and not looks_like_mask(alpha_samples[i + 1]):
            log.info("band 4 is tagged alpha but holds image values: reading it as NIR")
            names[i] = "NIR"
        else:
            alpha_index = i + 1
            names[i] = None

    if all(n is None for n in names):
        guess = {3: ("R", "G", "B"), 4: ("R", "G", "B", "NIR")}.get(count - (alpha_index is not None))
        if guess:
            log.warning("band colours are not tagged: assuming %s (say otherwise with --bands)", ",".join(guess))
            data_indexes = [i + 1 for i in range(count) if i + 1 != alpha_index]
            return {name: idx for name, idx in zip(guess, data_indexes)}, alpha_index
    mapping = {}
    for i, name in enumerate(names):
        if name is not None and name not in mapping:
            mapping[normalise_band_name(name)] = i + 1
    return mapping, alpha_index
