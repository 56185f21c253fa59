"""calibrate: calibrate software energy meters against wall-socket wattmeters."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Session", "__version__"]


def __getattr__(name: str):  # lazy, so `import calibrate` stays light
    if name == "Session":
        from calibrate.session import Session

        return Session
    raise AttributeError(name)
