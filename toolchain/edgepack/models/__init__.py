"""Loading models: the built-in zoo (``zoo``) and a user's ``file.py:factory`` (``loader``)."""
