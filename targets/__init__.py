"""The shipped target profiles, as package data of edgepack (found through importlib.resources)."""
