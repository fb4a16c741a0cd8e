"""dataport: the shared package behind every dataport Lambda (deployed as a layer)."""

__version__ = "0.1.0"
GENERATOR = f"dataport/{__version__}"
