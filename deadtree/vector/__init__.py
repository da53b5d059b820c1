"""Mask band to polygons: streamed polygonising, cleaning, measures, reprojection and writers."""
