"""mosn: a service-mesh data plane in Python, after MOSN and Envoy."""

# First, before any other module of mosn: under MOSN_NO_EXTENSIONS=1 it installs the
# import hook that loads every compiled module's .py twin instead (mosn/extensions.py).
from mosn import extensions as _extensions  # noqa: F401

__version__ = "0.1.0"

__all__ = ["__version__"]
