"""The model side of Penwright: finding, loading and running a local transformer. No Qt here.

Importing this package sets the Hugging Face libraries offline before they are imported anywhere, so no code
path can reach the network; torch and transformers themselves are imported lazily, where they are needed.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
