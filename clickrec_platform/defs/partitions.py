"""The partitions of the asset graph, in one place.

Events are partitioned by their event date (UTC), as silver.events is. The range starts before
RetailRocket's first day (2015-05-03) and the generator's default start, and runs to today.
"""

import dagster as dg

EVENT_DATES = dg.DailyPartitionsDefinition(start_date="2015-05-01", timezone="UTC", end_offset=1)
