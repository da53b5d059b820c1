"""A QGIS layer style for the dead-tree polygons: outlines coloured from yellow to red by `score_mean`.

The same QML travels two ways, both of which QGIS applies by itself when the layer is opened:
- beside a GeoJSON as `<same stem>.qml` (QGIS looks for that file name), and
- inside a GeoPackage as the default row of its `layer_styles` table (where QGIS saves styles "in the database").

Class breaks are fixed rather than taken from the data, so a colour means the same in every output: polygons
only exist where the probability passed the threshold, so most fall in the upper classes.
"""
from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from xml.sax.saxutils import quoteattr

STYLE_FIELD = "score_mean"
STYLE_NAME = "deadtree score"
FILL_ALPHA = 50  # of 255: the crown stays visible under the tint
OUTLINE_WIDTH_MM = 0.6
# (lower, upper, outline colour): yellow for barely-dead, red for certain
CLASSES = (
    (0.0, 0.6, (255, 255, 0)),
    (0.6, 0.7, (255, 200, 0)),
    (0.7, 0.8, (255, 140, 0)),
    (0.8, 0.9, (240, 70, 0)),
    (0.9, 1.0, (215, 0, 0)),
)


def _rgba(rgb: tuple[int, int, int], alpha: int) -> str:
    return ",".join(str(v) for v in (*rgb, alpha))


def _fill_symbol(name: str, rgb: tuple[int, int, int]) -> str:
    props = {
        "color": _rgba(rgb, FILL_ALPHA),
        "style": "solid",
        "outline_color": _rgba(rgb, 255),
        "outline_style": "solid",
        "outline_width": str(OUTLINE_WIDTH_MM),
        "outline_width_unit": "MM",
        "joinstyle": "round",
    }
    # Option elements are what QGIS >= 3.20 reads; <prop> is kept for older releases (3.22 itself writes both).
    options = "".join(f'<Option name="{k}" value="{v}" type="QString"/>' for k, v in props.items())
    legacy = "".join(f'<prop k="{k}" v="{v}"/>' for k, v in props.items())
    return (f'<symbol name="{name}" type="fill" alpha="1" clip_to_extent="1" force_rhr="0">'
            f'<layer class="SimpleFill" enabled="1" locked="0" pass="0">'
            f'<Option type="Map">{options}</Option>{legacy}</layer></symbol>')


def qml() -> str:
    """The style document: a graduated renderer on score_mean with one outlined symbol per class."""
    ranges = "".join(
        f'<range lower="{lo}" upper="{hi}" symbol="{i}" label={quoteattr(f"score {lo:.1f} – {hi:.1f}")} render="true"/>'
        for i, (lo, hi, _) in enumerate(CLASSES)
    )
    symbols = "".join(_fill_symbol(str(i), rgb) for i, (_, _, rgb) in enumerate(CLASSES))
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.22.0" styleCategories="Symbology">\n'
        f'<renderer-v2 type="graduatedSymbol" attr="{STYLE_FIELD}" graduatedMethod="GraduatedColor" '
        'symbollevels="0" forceraster="0" enableorderby="0">\n'
        f"<ranges>{ranges}</ranges>\n<symbols>{symbols}</symbols>\n"
        '<classificationMethod id="Custom"><labelFormat format="%1 – %2" labelprecision="1" '
        'trimtrailingzeroes="0"/></classificationMethod>\n'
        "</renderer-v2>\n"
        "<layerGeometryType>2</layerGeometryType>\n"
        "</qgis>\n"
    )


def write_qml(path: str | Path) -> Path:
    path = Path(path)
    path.write_text(qml(), encoding="utf-8")
    return path


def add_default_style(gpkg_path: str | Path, layer: str) -> None:
    """Store the style in the GeoPackage's `layer_styles` table as the layer's default.

    QGIS picks the row whose f_table_schema is '' and whose table and geometry column name the layer, default
    rows first, so both must match exactly. QGIS 3.22 finds the table without a gpkg_contents entry (checked
    in tests/test_qgis.py), so the GeoPackage keeps listing only the dead-tree layer.
    """
    with sqlite3.connect(str(gpkg_path)) as db:
        row = db.execute("SELECT column_name FROM gpkg_geometry_columns WHERE table_name = ?", (layer,)).fetchone()
        if row is None:
            raise ValueError(f"{gpkg_path} has no geometry layer {layer!r}")
        db.execute(
            "CREATE TABLE IF NOT EXISTS layer_styles ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,"
            " f_table_catalog TEXT(256), f_table_schema TEXT(256), f_table_name TEXT(256),"
            " f_geometry_column TEXT(256), styleName TEXT(30), styleQML TEXT, styleSLD TEXT,"
            " useAsDefault BOOLEAN, description TEXT, owner TEXT(30), ui TEXT(30), update_time DATETIME)"
        )
        # Only one default per layer, or QGIS would pick between them by update time.
        db.execute("UPDATE layer_styles SET useAsDefault = 0 WHERE f_table_name = ?", (layer,))
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        db.execute(
            "INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, f_geometry_column, styleName,"
            " styleQML, styleSLD, useAsDefault, description, owner, ui, update_time)"
            " VALUES ('', '', ?, ?, ?, ?, '', 1, ?, '', NULL, ?)",
            (layer, row[0], STYLE_NAME, qml(), "dead trees coloured by mean probability (deadtree)", now),
        )
    # sqlite3's context manager commits but does not close
    db.close()
