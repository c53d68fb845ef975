#!/usr/bin/env bash
# Run the demo site (testproject) on http://127.0.0.1:8000/ with an admin/admin
# superuser. Uses Redis as L2 when one answers at REDIS_URL
# (default redis://127.0.0.1:6379/0), otherwise L1 + L3 only.
set -euo pipefail

cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
export PATH="$PWD/.venv/bin:$PATH"

python -m pip install --quiet --disable-pip-version-check -e ".[redis]"

python testproject/manage.py migrate --noinput

# Create the admin/admin superuser only when the database has no superuser yet,
# so re-running the demo never resets a password someone changed.
python testproject/manage.py shell -c '
from django.contrib.auth import get_user_model

User = get_user_model()
if not User.objects.filter(is_superuser=True).exists():
    User.objects.create_superuser("admin", "admin@example.com", "admin")
    print("Created superuser admin / admin")
'

echo "Cache dashboard: http://127.0.0.1:8000/admin/tiered_cache_admin/cachedashboard/"
exec python testproject/manage.py runserver 127.0.0.1:8000
