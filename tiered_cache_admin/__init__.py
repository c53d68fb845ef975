"""Dashboard pages for tiered_cache in the Django admin."""
