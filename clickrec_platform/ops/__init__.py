"""Operations: alerts (and, later, metrics)."""
