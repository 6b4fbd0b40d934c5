"""The sofarpc plugin's tests. A package, so that its conftest is imported as
``tests.conftest`` and leaves the core tests' ``conftest`` module alone."""
