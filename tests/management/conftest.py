from tests.metrics.conftest import alias, process  # noqa: F401  (shared fixtures)
