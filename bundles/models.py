"""Bundle models arrive with the bundles issue (renderers, zip builder, downloads)."""
