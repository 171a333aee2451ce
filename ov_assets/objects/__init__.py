"""The bucket: object stores (S3, local), the archive of landing files and its registry, layout migration and bucket setup."""
