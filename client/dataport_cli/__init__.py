"""`dataport`: the command-line client of the dataport API (README.md beside this package)."""

__version__ = "0.1.0"
