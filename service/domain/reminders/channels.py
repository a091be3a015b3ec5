"""Where reminders go: email over SMTP, SMS through a Twilio-compatible HTTP gateway, or the
log (the local default, ``REMINDER_CHANNEL=log``).

Every message carries its dedupe key (``<booking>.<kind>.v<version>``): as the SMTP
``Message-ID`` (and ``X-Reminder-Key``), and as the gateway request's ``Idempotency-Key``
header, so a message sent again after a crash can be recognized and dropped downstream.

A channel raises ``DeliveryError`` with a machine reason and whether trying again may help;
it never puts an address, a phone number or message text in a log line or a reason.
Connections are kept open across one dispatch batch and closed with ``close()``.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import logging
import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.header import Header
from email.utils import formatdate
from typing import Protocol
from urllib.parse import urlencode, urlsplit

from service.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outgoing:
    reminder_id: str
    channel: str  # "email" or "sms"
    to: str
    subject: str
    text: str
    dedupe_key: str


class DeliveryError(Exception):
    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason[:64]
        self.permanent = permanent


class Channel(Protocol):
    name: str

    def send(self, message: Outgoing) -> None: ...

    def close(self) -> None: ...


class LogChannel:
    """Writes that a reminder would have gone out: ids and sizes only, never the text."""

    name = "log"

    def send(self, message: Outgoing) -> None:
        log.info("reminder %s delivered to the log (as %s, key %s, %d characters)",
                 message.reminder_id, message.channel, message.dedupe_key, len(message.text))

    def close(self) -> None:
        pass


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


class SmsGatewayChannel:
    """A Twilio-compatible Messages endpoint: form POST of To, From and Body with HTTP basic
    auth (account SID, auth token); 2xx means accepted."""

    name = "sms"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._connection: http.client.HTTPConnection | None = None
        url = settings.sms_gateway_url
        self._url = urlsplit(url) if url else None

    def _connect(self) -> http.client.HTTPConnection:
        assert self._url is not None
        timeout = self.settings.channel_timeout_seconds
        connection: http.client.HTTPConnection
        if self._url.scheme == "https":
            connection = http.client.HTTPSConnection(
                self._url.hostname or "", self._url.port, timeout=timeout,
                context=ssl.create_default_context())
        else:
            connection = http.client.HTTPConnection(self._url.hostname or "", self._url.port,
                                                    timeout=timeout)
        connection.connect()
        # Headers and body leave in separate writes: without this, Nagle's algorithm and the
        # peer's delayed ACK add ~40 ms to every request on a kept-alive connection.
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def _request(self, body: str, headers: dict[str, str]) -> int:
        assert self._url is not None
        reused = self._connection is not None
        if self._connection is None:
            self._connection = self._connect()
        path = self._url.path or "/"
        if self._url.query:
            path += "?" + self._url.query
        try:
            self._connection.request("POST", path, body=body.encode(), headers=headers)
            response = self._connection.getresponse()
            response.read()
            if response.will_close:
                self.close()
            return response.status
        except (http.client.HTTPException, OSError):
            self.close()
            if reused:  # the server closed a kept-alive connection: try a fresh one once
                return self._request(body, headers)
            raise

    def send(self, message: Outgoing) -> None:
        s = self.settings
        if self._url is None or not s.sms_from:
            raise DeliveryError("sms_gateway_not_configured", permanent=True)
        body = urlencode({"To": message.to, "From": s.sms_from, "Body": message.text})
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "Accept": "application/json",
                   "Idempotency-Key": message.dedupe_key}
        if s.sms_account_sid:
            token = base64.b64encode(
                f"{s.sms_account_sid}:{s.sms_auth_token or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        try:
            status = self._request(body, headers)
        except TimeoutError:
            raise DeliveryError("sms_timeout", permanent=False) from None
        except (http.client.HTTPException, OSError) as error:
            raise DeliveryError(f"sms_{type(error).__name__}", permanent=False) from None
        if 200 <= status < 300:
            return
        transient = status in (408, 409, 425, 429) or status >= 500
        raise DeliveryError(f"sms_http_{status}", permanent=not transient)

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


class Channels:
    """The channels of one dispatcher: the log only, or SMTP and the SMS gateway."""

    def __init__(self, settings: Settings) -> None:
        self.live = settings.reminder_channel == "live"
        self._log = LogChannel()
        self._email = SmtpChannel(settings) if self.live else None
        self._sms = SmsGatewayChannel(settings) if self.live else None

    def for_message(self, channel: str) -> Channel:
        if not self.live:
            return self._log
        chosen = self._sms if channel == "sms" else self._email
        assert chosen is not None
        return chosen

    def close(self) -> None:
        for channel in (self._email, self._sms):
            if channel is not None:
                channel.close()
