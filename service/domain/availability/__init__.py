"""Provider availability: working windows and bookable slots."""
