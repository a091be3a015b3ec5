"""HTTP for running the service: its metrics."""
