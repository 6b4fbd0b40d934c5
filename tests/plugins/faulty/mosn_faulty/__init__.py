"""A test plugin whose codecs raise on purpose (see plugin.py)."""
