"""Treatment series: protocol-driven runs of sessions, booked all-or-nothing."""
