"""Run by Debian's /usr/bin/python3 (which has the qgis module): open layers as QGIS does, report as JSON."""
import json
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from qgis.core import QgsApplication, QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsProject, QgsVectorLayer  # noqa: E402

app = QgsApplication([], False)
app.initQgis()
report = []
for uri in sys.argv[1:]:
    layer = QgsVectorLayer(uri, "dead trees", "ogr")
    entry = {"uri": uri, "valid": layer.isValid()}
    if layer.isValid():
        to_ll = QgsCoordinateTransform(layer.crs(), QgsCoordinateReferenceSystem("EPSG:4326"), QgsProject.instance())
        extent = to_ll.transformBoundingBox(layer.extent())
        # What opening the layer gave. Read now: loadDefaultStyle() below replaces (and deletes) the renderer.
        renderer = layer.renderer()
        style = dict(
            renderer=renderer.type() if renderer else None,
            class_attribute=renderer.classAttribute() if hasattr(renderer, "classAttribute") else None,
            classes=len(renderer.ranges()) if hasattr(renderer, "ranges") else 0,
        )
        del renderer
        message, has_style = "", False
        try:
            has_style = bool(layer.loadDefaultStyle()[1])
        except Exception as exc:  # older API shapes
            message = str(exc)
        entry.update(
            crs=layer.crs().authid(),
            features=layer.featureCount(),
            fields=[f.name() for f in layer.fields()],
            extent_lonlat=[extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()],
            geometry_type=layer.geometryType(),
            default_style_loaded=has_style,
            **style,
            note=message,
        )
    report.append(entry)
    del layer
print(json.dumps(report), flush=True)
# QGIS tends to crash while tearing down a headless application; the report is out, so leave at once.
os._exit(0)
