"""Target profiles: the typed sections (``sections.py``), the strict reader that turns TOML values
into them (``typed.py``), the ``[tune]`` section's checks (``tune_section.py``) and the loader of
``targets/*.toml`` with ``extends`` and ``--set`` (``loader.py``)."""
