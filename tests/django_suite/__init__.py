"""Django's own cache test suite, run against ``tiered_cache.TieredCache``.

``fetch`` downloads the sdist of exactly the installed Django version from PyPI
and extracts its ``tests/`` directory into ``.cache/django-src/``;
``tiered_suite`` subclasses the upstream test classes (nothing is copied from
them); ``run`` starts a redis-server, copies ``tiered_suite`` into the extracted
``tests/`` directory and runs Django's ``runtests.py`` on it::

    .venv/bin/python -m tests.django_suite.run
    TIERED_SUITE_BACKEND=locmem .venv/bin/python -m tests.django_suite.run
"""
