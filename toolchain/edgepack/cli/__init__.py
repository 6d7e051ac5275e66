"""The ``edgepack`` command: arguments -> ``api`` calls -> exit status. ``main.py`` holds the parser
and the dispatch; each command's handler lives in a module named after it."""
