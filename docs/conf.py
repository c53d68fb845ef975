"""Sphinx configuration for the django-tiered-cache documentation."""

project = "django-tiered-cache"
author = "The django-tiered-cache authors"
copyright = "2025, The django-tiered-cache authors"
version = "0.1"
release = "0.1.0.dev0"

# No extension fetches anything over the network (no intersphinx): the docs must
# build offline, with warnings as errors (`sphinx -W`).
extensions = []

root_doc = "index"
source_suffix = {".rst": "restructuredtext"}
exclude_patterns = ["_build"]
highlight_language = "python"

html_theme = "alabaster"
html_title = "django-tiered-cache"
