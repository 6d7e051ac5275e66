"""``edgepack compare``: the compression methods side by side on one target (methods.py, run.py, report.py)."""
