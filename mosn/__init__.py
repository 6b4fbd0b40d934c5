"""mosn: a service-mesh data plane in Python, after MOSN and Envoy."""

__version__ = "0.1.0"

__all__ = ["__version__"]
