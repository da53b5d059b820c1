"""deadtree's REST service: GeoTIFF in, dead-tree polygons out, over HTTP (docs/service.md)."""
from service.app import create_app
from service.settings import Settings

__all__ = ["Settings", "create_app"]
