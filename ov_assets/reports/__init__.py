"""Reports: consolidated CSV/Parquet per partition and their nightly upload to the bucket."""
