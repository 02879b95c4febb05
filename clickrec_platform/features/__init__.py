"""Feature tables over silver events, as Spark DataFrame functions (the Dagster assets are thin)."""
