"""Dagster definitions: partitions, assets, checks, jobs, schedules, sensors and resources. The only layer that imports Dagster."""
