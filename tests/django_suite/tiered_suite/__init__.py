"""Django's cache tests re-pointed at ``tiered_cache.TieredCache``.

This package is copied into the extracted Django ``tests/`` directory by
``tests.django_suite.run`` and imported there by ``runtests.py`` (it imports
``cache.tests`` and ``template_tests``, which exist only in that directory).
"""
