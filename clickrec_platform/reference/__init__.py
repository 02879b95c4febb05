"""Reference data: the category tree and the item catalogue (point in time)."""
