"""Building blocks of the synthetic clickstream; `clickrec_platform.sources.generator` is the API."""
