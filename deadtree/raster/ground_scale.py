"""Metres on the ground per unit of a scene's CRS, measured where the scene lies.

A CRS's linear unit says what its numbers are (metres, US survey feet), not how far apart two points are on
the ground. In the CRSs made for mapping (UTM, State Plane, national grids) the two agree within about 1/1000,
but not in every projected CRS: in Web Mercator a 0.6 m ground pixel at 41° N spans 0.79 "metres", so reading
the unit as ground distance would magnify the imagery 1.32 times for the model and overstate every area 1.75
times.
"""
from __future__ import annotations

import math

from affine import Affine

# Within this, the CRS's own unit is kept: figures in a mapping CRS stay its own planar measure.
DISTORTION_TOLERANCE = 0.01


def unit_metres(crs) -> float | None:
    """Metres per linear unit of a projected CRS (None for lon/lat)."""
    if crs.is_geographic:
        return None
    return crs.linear_units_factor[1] if crs.linear_units_factor else 1.0


def ground_scale(crs, transform: Affine, width: int, height: int) -> tuple[float, float]:
    """Ground metres per CRS unit along x and y at the scene's centre, on the WGS 84 ellipsoid.

    Measured over one pixel's step from the centre. A CRS that cannot be placed on the ellipsoid (a local
    engineering CRS) falls back to its linear unit."""
    from pyproj import Geod, Transformer
    from rasterio.transform import xy
    from pyproj.exceptions import CRSError, ProjError

    unit = unit_metres(crs)
    step_x, step_y = abs(transform.a), abs(transform.e)
    x, y = xy(transform, height / 2, width / 2, offset="ul")  # the scene's centre
    try:
        to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
        lons, lats = to_lonlat.transform([x, x + step_x, x], [y, y, y + step_y])
        geod = Geod(ellps="WGS84")
        per_x = geod.inv(lons[0], lats[0], lons[1], lats[1])[2] / step_x
        per_y = geod.inv(lons[0], lats[0], lons[2], lats[2])[2] / step_y
    except (CRSError, ProjError):
        per_x = per_y = math.nan
    if not (math.isfinite(per_x) and math.isfinite(per_y) and per_x > 0 and per_y > 0):
        if unit is None:
            raise ValueError("the scene's lon/lat position cannot be placed on the ellipsoid")
        return unit, unit
    if unit is not None and max(abs(per_x / unit - 1), abs(per_y / unit - 1)) <= DISTORTION_TOLERANCE:
        return unit, unit
    return per_x, per_y
