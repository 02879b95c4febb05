"""The Delta lake: table locations, a Spark session with Delta and Kafka, and DuckDB over Delta."""
