"""pytest plugin: a real Label Studio server for the tests (filled in by the Label Studio work)."""
