"""Idempotency-Key records: the first answer to a POST, kept and replayed."""
