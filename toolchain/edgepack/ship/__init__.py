"""Shipping a build: the bundle writer and its report (``bundle.py``), ``edgepack verify``
(``verify.py``), the regression gate ``edgepack check`` (``gate.py``) and the manifests' JSON
Schemas (``schemas/``)."""
