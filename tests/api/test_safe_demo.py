"""``make run`` sends nothing off the machine: reminders and webhook deliveries go to the
scheduler's log unless configured otherwise, and the demo's other targets are local."""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from service.adapters.log import LogWebhookChannel
from service.config import Settings
from service.demo import seed_demo
from service.domain.calendar.models import WebhookSubscription
from service.extensions import unit_of_work
from service.scheduler import reminder_channels, webhook_channel, webhook_runner
from tests.factories import clinic_today
from tests.scenario import build_clinic

ROOT = Path(__file__).resolve().parents[2]


def make_run_environment() -> dict[str, str]:
    """The variables ``make run`` gives the scheduler when none is set (``make -n``)."""
    dry = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"}, check=True).stdout
    line = dry[dry.index("REMINDER_CHANNEL="):].split("python -m service.scheduler")[0]
    return {name: default for name, default in
            re.findall(r"([A-Z_]+)=\$\{[A-Z_]+:-([a-z]+)\}", line)}


def test_make_run_keeps_reminders_and_webhooks_on_the_log():
    env = make_run_environment()
    assert env == {"REMINDER_CHANNEL": "log", "WEBHOOK_CHANNEL": "log"}
    settings = Settings.from_env(env)
    assert isinstance(webhook_channel(settings).adapter, LogWebhookChannel)
    assert {channel.name for channel in reminder_channels(settings).values()} == {"log"}
    # The other outbound targets of the defaults are local or reserved names.
    defaults = Settings.from_env({})
    assert defaults.smtp_host == "localhost" and defaults.sms_gateway_url is None
    assert ".invalid/" in defaults.telehealth_video_url_template


def test_the_demo_data_targets_nothing_off_the_machine(app):
    with app.app_context():
        assert seed_demo(unit_of_work, today=clinic_today()) is True
        with unit_of_work(read_only=True) as uow:
            hosts = {urlsplit(url).hostname for url in uow.session.scalars(
                select(WebhookSubscription.url))}
    assert hosts <= {"127.0.0.1", "localhost", "::1"}


def test_a_public_webhook_is_not_called_on_the_demo_channel(app, api, monkeypatch):
    clinic = build_clinic(api)
    hook = api.post("/api/v1/webhooks", role="integration", json={
        "url": "https://hooks.example.com/clinic", "events": ["booking.created"]})
    assert hook.status_code == 201, hook.get_json()
    assert clinic.book("consultation", clinic.at(14)).status_code == 201

    def no_network(*args, **kwargs):
        raise AssertionError("the demo tried to reach the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    settings = Settings.from_env({**make_run_environment(), "DATABASE_URL":
                                  app.config["DATABASE_URL"]})
    report = webhook_runner(app.extensions["clinic.database"], settings).run_once()
    assert report.delivered >= 1


@pytest.mark.parametrize("value", ["live", "log"])
def test_webhook_channel_setting(value):
    assert Settings.from_env({"WEBHOOK_CHANNEL": value}).webhook_channel == value
    with pytest.raises(ValueError, match="WEBHOOK_CHANNEL"):
        Settings.from_env({"WEBHOOK_CHANNEL": "smoke-signals"})
