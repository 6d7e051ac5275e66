"""The shipped calibration manifests and samples, as package data of edgepack (importlib.resources)."""
