"""Running the service: who may read what it reports about itself."""
