"""AetherLens core: collectors, writer, cost engine and API for home-lab energy and cloud costs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("aetherlens")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"

__all__ = ["__version__"]
