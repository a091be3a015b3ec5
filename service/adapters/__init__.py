"""Adapters: the only code that talks to the outside (SMTP, the SMS gateway, webhook HTTP).

The domain never imports them: ``service.scheduler`` builds them from the settings and hands
them to the outboxes (``service.domain.outbox``). Each one implements the domain's
``Adapter`` protocol: ``send(message)`` returns once the peer accepted the message and raises
``DeliveryError`` (a machine reason, never an address, a number or message text) otherwise;
``close()`` drops a connection kept open across a batch.

- ``log.py``: reminders written to the log (ids only), the local default;
- ``smtp.py``: reminder emails over SMTP (smtplib, optional TLS);
- ``sms.py``: reminder texts through a Twilio-compatible HTTP gateway (http.client);
- ``http.py``: webhook POSTs (http.client).
"""
