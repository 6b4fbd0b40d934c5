"""mosn as an xDS client: Envoy v3 resources in, mosn config out (docs/xds.md)."""
