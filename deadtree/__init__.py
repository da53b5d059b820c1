"""deadtree: map standing dead trees in aerial orthophotos."""

__version__ = "0.1.0"
