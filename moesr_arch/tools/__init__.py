"""Command-line tools behind ``basicsr prepare|infer|export``; each module has ``add_arguments`` and ``main``."""
