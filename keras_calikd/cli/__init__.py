"""Command-line tools of keras_calikd: each module's main(argv) is a console script and a tools/ shim."""
