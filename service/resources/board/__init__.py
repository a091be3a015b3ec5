"""The staff day board: a page served by the service, reading the same /api/v1 endpoints."""
