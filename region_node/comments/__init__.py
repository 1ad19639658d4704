"""Live comments of a broadcaster: config, the SQLite file, the ingest and history book, delivery, the service."""
