"""The one site-profile row (pk=1), so that reading the profile never writes (``selectors.profile_get``)."""

from django.db import migrations


def forwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    SiteProfile = apps.get_model("bundles", "SiteProfile")
    SiteProfile.objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    dependencies = [("bundles", "0002_bundle_crl_number")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
