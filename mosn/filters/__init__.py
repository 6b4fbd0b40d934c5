"""Built-in network filters."""
