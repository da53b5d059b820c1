"""Reading scenes: band mapping, nodata, ground resolution, value normalisation."""
