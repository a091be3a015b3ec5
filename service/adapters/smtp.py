"""Reminder emails over SMTP (``SMTP_*``): plain text, UTF-8, quoted-printable.

The dedupe key is the ``Message-ID`` (``<key@sender's domain>``) and ``X-Reminder-Key``, so a
message sent again after a crash can be recognized downstream. One connection is kept open
across a batch (``close()`` ends it); a kept-alive connection the server dropped is replaced
once. Errors become ``DeliveryError``: 5xx answers are permanent, the rest transient.
"""

from __future__ import annotations

import binascii
import smtplib
import ssl
from email.header import Header
from email.utils import formatdate

from service.config import Settings
from service.domain.outbox import DeliveryError
from service.domain.reminders.channels import Outgoing


class SmtpChannel:
    name = "email"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None
        domain = settings.smtp_from.rpartition("@")[2] or "localhost"
        self._domain = domain

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        timeout = s.channel_timeout_seconds
        if s.smtp_tls == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=timeout,
                                                  context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=timeout)
            if s.smtp_tls == "starttls":
                smtp.starttls(context=ssl.create_default_context())
        if s.smtp_username:
            smtp.login(s.smtp_username, s.smtp_password or "")
        return smtp

    def _email(self, message: Outgoing) -> bytes:
        """The message as RFC 5322 bytes: plain text, UTF-8, quoted-printable.

        Written out directly: the ``email`` package's header registry costs more than the
        rest of a send. Values with a line break are refused (no header injection).
        """
        if any(ch in value for value in (message.to, message.subject) for ch in "\r\n"):
            raise DeliveryError("smtp_bad_header", permanent=True)
        if not message.to.isascii():
            raise DeliveryError("smtp_address_not_ascii", permanent=True)  # needs SMTPUTF8
        subject = (message.subject if message.subject.isascii()
                   else Header(message.subject, "utf-8").encode())
        head = (f"From: {self.settings.smtp_from}\r\n"
                f"To: {message.to}\r\n"
                f"Subject: {subject}\r\n"
                f"Date: {formatdate(usegmt=True)}\r\n"
                f"Message-ID: <{message.dedupe_key}@{self._domain}>\r\n"
                f"X-Reminder-Key: {message.dedupe_key}\r\n"
                "Auto-Submitted: auto-generated\r\n"
                "MIME-Version: 1.0\r\n"
                "Content-Type: text/plain; charset=utf-8\r\n"
                "Content-Transfer-Encoding: quoted-printable\r\n\r\n")
        text = message.text.replace("\r\n", "\n").replace("\n", "\r\n")
        return head.encode("utf-8") + binascii.b2a_qp(text.encode("utf-8"), istext=True)

    def send(self, message: Outgoing) -> None:
        data = self._email(message)
        reused = self._smtp is not None
        try:
            if self._smtp is None:
                self._smtp = self._connect()
            self._smtp.sendmail(self.settings.smtp_from, [message.to], data)
        except smtplib.SMTPServerDisconnected:
            self.close()
            if not reused:
                raise DeliveryError("smtp_disconnected", permanent=False) from None
            self._retry_fresh(message.to, data)  # a kept-alive connection the server closed
        except smtplib.SMTPRecipientsRefused as refused:
            self.close()
            codes = [code for code, _ in refused.recipients.values()]
            raise DeliveryError(f"smtp_{codes[0] if codes else 'refused'}",
                                permanent=bool(codes) and codes[0] >= 500) from None
        except smtplib.SMTPResponseException as error:
            self.close()
            raise DeliveryError(f"smtp_{error.smtp_code}",
                                permanent=error.smtp_code >= 500) from None
        except (smtplib.SMTPException, OSError) as error:
            self.close()
            raise DeliveryError(f"smtp_{type(error).__name__}", permanent=False) from None

    def _retry_fresh(self, to: str, data: bytes) -> None:
        try:
            self._smtp = self._connect()
            self._smtp.sendmail(self.settings.smtp_from, [to], data)
        except smtplib.SMTPResponseException as error:
            self.close()
            raise DeliveryError(f"smtp_{error.smtp_code}",
                                permanent=error.smtp_code >= 500) from None
        except (smtplib.SMTPException, OSError) as error:
            self.close()
            raise DeliveryError(f"smtp_{type(error).__name__}", permanent=False) from None

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()
