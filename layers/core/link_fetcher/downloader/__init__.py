"""The downloader (SPEC §7): To Download messages or granule ids → verified objects in S3 or a local folder,
with the outcome recorded on `granule`; and reconciliation of the stored objects with the database."""
