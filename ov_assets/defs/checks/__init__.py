"""Asset checks: per-partition checks run with their asset (``partition``), table-wide and reconciliation checks (``tablewide``)."""
