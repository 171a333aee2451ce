"""The landing folder: its incremental index and the cleanup of files proven in the bucket."""
