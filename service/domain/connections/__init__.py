"""Connected calendars: a provider's other calendars block their slots, and visits appear in
them (iCalendar URL, CalDAV, push API; write-back to CalDAV through an outbox)."""
