"""Business rules of the clinic: no Flask, no marshmallow, no HTTP in here."""
