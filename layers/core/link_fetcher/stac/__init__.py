"""STAC source: watch an area on any STAC API by time windows, with band selection."""
