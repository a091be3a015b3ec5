"""Reminder content (pure): minimum necessary, no drug/diagnosis/treatment word, SMS in 160
GSM-7 characters with the opt-out text."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import unicodedata
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.reminders import content
from service.domain.reminders.content import (
    FORBIDDEN_WORDS,
    OPT_OUT_TEXT,
    SMS_LIMIT,
    TEMPLATES,
    ContentRefused,
    MessageFacts,
    check_templates,
    forbidden_words,
    render,
)

CLINIC = {"clinic_name": "Desert Bloom Wellness", "clinic_phone": "+16025550100"}
KINDS = ["confirmation", "before_72h", "before_24h", "before_2h", "next_day_check_in"]


def facts(**overrides) -> MessageFacts:
    values = {"first_name": "Jordan", "starts_at": datetime(2026, 7, 14, 17, 0, tzinfo=UTC),
              "zone": "America/Denver", "clinic_name": "Desert Bloom Wellness",
              "clinic_phone": "+16025550100", "in_person": True, **overrides}
    return MessageFacts(**values)


def test_the_shipped_templates_pass_the_content_check():
    check_templates(**CLINIC)


@pytest.mark.parametrize("word", ["ketamine", "Esketamine", "SPRAVATO", "infusion", "IV",
                                  "depression", "anxiety", "psychiatric", "PTSD", "suicide",
                                  "nasal spray", "treatment"])
def test_a_template_with_a_forbidden_word_fails_the_check(word):
    bad = dict(TEMPLATES)
    bad["before"] = dataclasses.replace(
        TEMPLATES["before"], sms=f"Hi {{first_name}}, your {word} visit is {{when}}. "
                                 + OPT_OUT_TEXT)
    with pytest.raises(ContentRefused) as refused:
        check_templates(bad, **CLINIC)
    assert any("before.sms" in problem for problem in refused.value.problems)


def test_a_forbidden_word_in_the_email_subject_or_the_advice_fails_too():
    bad = dict(TEMPLATES)
    bad["confirmation"] = dataclasses.replace(TEMPLATES["confirmation"],
                                              subject="Your ketamine session")
    with pytest.raises(ContentRefused):
        check_templates(bad, **CLINIC)
    with pytest.raises(ContentRefused):
        check_templates(preparation={"in_person": ("Bring your depression diary.", "x")},
                        **CLINIC)


def test_a_clinic_alias_naming_the_treatment_fails_the_check():
    with pytest.raises(ContentRefused) as refused:
        check_templates(clinic_name="Valley Ketamine Center", clinic_phone="+16025550100")
    assert refused.value.problems == ["clinic name: ketamine"]


def test_an_sms_template_too_long_for_one_segment_fails_the_check():
    bad = dict(TEMPLATES)
    bad["confirmation"] = dataclasses.replace(
        TEMPLATES["confirmation"], sms="Hi {first_name}, " + "x" * 140 + " " + OPT_OUT_TEXT)
    with pytest.raises(ContentRefused, match="characters"):
        check_templates(bad, **CLINIC)


def test_a_template_without_the_opt_out_text_fails_the_check():
    bad = dict(TEMPLATES)
    bad["confirmation"] = dataclasses.replace(TEMPLATES["confirmation"], sms="Hi {first_name}")
    with pytest.raises(ContentRefused, match="opt-out"):
        check_templates(bad, **CLINIC)


def test_whole_words_only_and_case_insensitive():
    assert forbidden_words("Ketamine, IV; i.v. and an infusion") == ["ketamine", "iv", "i.v.",
                                                                     "infusion"]
    assert forbidden_words("Ivy drives to Riverside with Divya; dosimeter, therapist") == []
    assert forbidden_words("Mental-Health and self harm") == ["mental health", "self harm"]


def test_letters_that_ignorecase_takes_for_ascii_are_folded():
    # Dotless i, dotted capital I, long s, Kelvin sign, full-width letters.
    assert forbidden_words("ketam\u0131ne KETAM\u0130NE \u017fedation \u212aetalar") == [
        "ketamine", "sedation", "ketalar"]
    assert forbidden_words("\uff29\uff36 drip") == ["iv", "drip"]
    assert forbidden_words("Ketamine\u0130 DRIPS xiv") == ["drips"]


def _ignorecase_words(text: str) -> list[tuple[int, int]]:
    """Where the word list matches ``text`` with ``re.IGNORECASE`` on the NFKC text (how the
    check read it before it folded the text itself)."""
    def one(word: str) -> str:
        return "".join(r"[\s\-]+" if t == " " else r"[\s\-]*" if t == "-" else re.escape(t)
                       for t in re.split(r"([ \-])", word))
    alternatives = sorted((one(w) for w in FORBIDDEN_WORDS), key=len, reverse=True)
    pattern = re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(alternatives)
                         + r")s?(?![A-Za-z0-9])", re.IGNORECASE)
    return [m.span() for m in pattern.finditer(unicodedata.normalize("NFKC", text))]


tricky = st.sampled_from(list(FORBIDDEN_WORDS) + [
    " ", "-", ".", "s", "S", "x", "7", "\u0131", "\u0130", "\u017f", "\u212a", "\uff49",
    "\u00e9", "\n", "I", "V", "K", "DOSE", "Self", "HARM", "mental", "Health"])


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.one_of(tricky, st.text(max_size=3)), max_size=12).map("".join))
def test_the_folded_check_finds_what_a_case_insensitive_match_finds(text):
    # Folding keeps every character in place (no letter becomes two), so the spans compare.
    spans = [m.span() for m in content._FORBIDDEN.finditer(content._fold(text))]
    assert spans == _ignorecase_words(text)
    assert (forbidden_words(text) == []) == (spans == [])


def test_a_rendered_message_is_checked_again_at_send_time():
    # A first name can carry a forbidden word too: the message is refused, not sent.
    with pytest.raises(ContentRefused):
        render("before_24h", facts(first_name="Ketamine"))


@pytest.mark.parametrize("kind", KINDS)
def test_messages_say_only_the_minimum(kind):
    message = render(kind, facts())
    for text in (message.subject, message.email, message.sms):
        assert forbidden_words(text) == []
    assert "Jordan" in message.sms and "602-555-0100" in message.sms
    assert message.sms.endswith(OPT_OUT_TEXT) and len(message.sms) <= SMS_LIMIT
    if kind != "next_day_check_in":
        # 17:00Z on July 14 is 11:00 MDT for a Navajo Nation patient.
        assert "11:00 AM MDT" in message.sms and "Jul 14" in message.sms


def test_preparation_advice_is_generic():
    in_person = render("before_24h", facts()).email
    assert "eat lightly, stay hydrated and arrange a ride home" in in_person
    video = render("before_24h", facts(in_person=False)).email
    assert "ride home" not in video


def test_the_patients_zone_decides_the_time_shown():
    january = datetime(2026, 1, 14, 17, 0, tzinfo=UTC)
    assert "10:00 AM MST" in render("before_2h", facts(starts_at=january)).sms
    assert "10:00 AM MST" in render("before_2h", facts(starts_at=january,
                                                       zone="America/Phoenix")).sms


names = st.text(alphabet=st.characters(codec="utf-8", categories=["L", "Zs", "Pd"]),
                min_size=1, max_size=100).filter(lambda s: s.strip() and forbidden_words(s) == [])


@settings(max_examples=200, deadline=None, database=None)
@given(name=names, kind=st.sampled_from(KINDS), in_person=st.booleans())
def test_every_sms_fits_one_gsm7_segment_with_the_opt_out_text(name, kind, in_person):
    try:
        sms = render(kind, facts(first_name=name, in_person=in_person)).sms
    except ContentRefused:
        return  # a name normalized into a forbidden word is refused, never sent
    assert len(sms) <= SMS_LIMIT
    assert sms.endswith(OPT_OUT_TEXT)
    assert all(ch in content.GSM7 for ch in sms)


def stay(**overrides) -> MessageFacts:
    """An in-clinic visit at 11:00 MDT: arrive 10:45, leave about 13:15, with a driver."""
    start = datetime(2026, 7, 14, 17, 0, tzinfo=UTC)
    return facts(**{"arrive_at": start - timedelta(minutes=15),
                    "leaves_at": start + timedelta(minutes=135), "with_driver": True,
                    **overrides})


def test_a_reminder_shows_the_whole_stay_and_the_driver():
    message = render("before_24h", stay())
    assert "Arrive 10:45 with a driver; leave about 1:15 PM." in message.sms
    assert ("Please arrive by 10:45 AM. Your visit starts at 11:00 AM MDT and you may leave "
            "at about 1:15 PM MDT. Please arrive with a driver") in message.email
    assert "driver" not in render("before_24h", stay(with_driver=False)).sms
    assert "leave" not in render("before_24h", facts()).sms


def test_the_service_type_s_wordings_replace_the_generic_advice():
    message = render("before_24h", stay(first_name="Jo", advice=("Stay hydrated",),
                                        after_care=("No driving until the next day.",)))
    assert "Before your visit:\n- Stay hydrated.\n\nAfter your visit:\n- No driving until " \
           "the next day." in message.email
    assert "eat lightly" not in message.email
    # The SMS keeps the stay first; a video visit's SMS carries the first wording instead of
    # the generic advice.
    assert "Stay hydrated." not in message.sms
    video = render("before_24h", facts(in_person=False, advice=("Join from your car",)))
    assert "Join from your car." in video.sms and "quiet, private" not in video.sms


def test_a_long_name_keeps_the_essentials_of_the_stay():
    sms = render("before_24h", stay(first_name="Maximiliana")).sms
    assert "Maximiliana" in sms and "Leave about 1:15 PM; bring a driver." in sms


@settings(max_examples=200, deadline=None, database=None)
@given(name=names, kind=st.sampled_from(KINDS),
       minutes=st.integers(min_value=0, max_value=600),
       advice=st.lists(st.text(alphabet=sorted(content.GSM7 - {"{", "}", "\n", "\r"}),
                               min_size=1, max_size=60), max_size=2))
def test_every_sms_with_a_stay_fits_one_gsm7_segment(name, kind, minutes, advice):
    start = datetime(2026, 9, 30, 19, 45, tzinfo=UTC)
    try:
        sms = render(kind, stay(first_name=name, starts_at=start,
                                arrive_at=start - timedelta(minutes=15),
                                leaves_at=start + timedelta(minutes=minutes),
                                advice=tuple(a for a in advice if not forbidden_words(a)))
                     ).sms
    except ContentRefused:
        return
    assert len(sms) <= SMS_LIMIT and sms.endswith(OPT_OUT_TEXT)
    assert all(ch in content.GSM7 for ch in sms)


def test_the_scheduler_refuses_to_start_with_a_forbidden_clinic_alias(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "service.scheduler"], capture_output=True, text=True,
        timeout=60, env={"CLINIC_NAME": "Sunrise Infusion Center",
                         "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}",
                         "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "content check failed" in result.stderr


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stay", [{}, {"in_person": False},
                                  {"leaves_at": datetime(2026, 7, 14, 19, 0, tzinfo=UTC),
                                   "with_driver": True, "advice": ("Eat lightly",),
                                   "after_care": ("Rest",)}])
def test_one_channel_renders_what_all_three_render(kind, stay):
    # Each channel's render computes only its own fields (an SMS skips the email's stay).
    both = render(kind, facts(**stay))
    sms, email = (render(kind, facts(**stay), channel=c) for c in ("sms", "email"))
    assert (sms.sms, sms.email, sms.subject) == (both.sms, "", "")
    assert (email.subject, email.email, email.sms) == (both.subject, both.email, "")
