"""The Docker-free local stack. Like Lambda's /opt/python, the dataport layer's source joins
sys.path here, so the stack's tools import `dataport` as the functions do."""

import sys
from pathlib import Path

_LAYER = str(Path(__file__).resolve().parents[2] / "layers" / "dataport")
if _LAYER not in sys.path:
    sys.path.insert(0, _LAYER)
