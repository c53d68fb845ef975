# Placeholder: the dashboard (an unmanaged model carrying the permissions, its admin
# and views) comes in its own issue.
