"""Sphinx configuration for the django-tiered-cache documentation."""

import os
import sys

import django

project = "django-tiered-cache"
author = "The django-tiered-cache authors"
copyright = "2025, The django-tiered-cache authors"
version = "0.1"
release = "0.1.0.dev0"

# No extension fetches anything over the network (no intersphinx): the docs must
# build offline, with warnings as errors (`sphinx -W`). autodoc imports the
# package, so Django is configured first (no settings module needed).
sys.path.insert(0, os.path.abspath(".."))
from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(INSTALLED_APPS=["tiered_cache"])
    django.setup()

extensions = ["sphinx.ext.autodoc"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"

root_doc = "index"
source_suffix = {".rst": "restructuredtext"}
exclude_patterns = ["_build"]
highlight_language = "python"

html_theme = "alabaster"
html_title = "django-tiered-cache"
