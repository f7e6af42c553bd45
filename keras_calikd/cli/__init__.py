"""Command-line tools of keras_calikd: each module's `main(argv)` runs one tool, installed as a console script."""
