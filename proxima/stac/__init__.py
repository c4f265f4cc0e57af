"""The catalog as a live STAC API and intake-esm datastore, for the tools scientists use."""
