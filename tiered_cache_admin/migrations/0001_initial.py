# The unmanaged CacheDashboard: no table is created; the migration exists so
# that the model's permissions are created by ``migrate`` like any app's.

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="CacheDashboard",
            fields=[
                (
                    "id",
                    models.AutoField(
                        auto_created=True,
                        primary_key=True,
                        serialize=False,
                        verbose_name="ID",
                    ),
                ),
            ],
            options={
                "verbose_name": "cache dashboard",
                "verbose_name_plural": "cache dashboard",
                "permissions": [
                    ("view_dashboard", "Can view the cache dashboard"),
                    ("act_on_cache", "Can clear cache tiers and invalidate keys"),
                    ("view_values", "Can see cached values in the key inspector"),
                ],
                "managed": False,
                "default_permissions": (),
            },
        ),
    ]
