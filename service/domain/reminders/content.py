"""Reminder texts: templates per kind, minimum necessary, and the check that keeps every
drug, diagnosis and treatment word out of them (pure).

A message says only: the patient's first name, the visit's date and time in the patient's
zone, the whole stay of a visit in the clinic (arrive by, leave at about, with a driver), the
neutral clinic alias (``CLINIC_NAME``), the clinic's phone and preparation advice: the
service type's PHI-free reminder wordings, else the generic advice. SMS previews are read by
anyone near the phone, so ``check`` refuses a template or a rendered message that names a
drug, a diagnosis or a treatment, as whole words, case-insensitively. The scheduler runs
``check_templates`` at start-up (and refuses to start); the dispatcher checks every rendered
message again before it is sent.

An SMS fits in one 160-character GSM-7 segment, the opt-out text included: the stay and the
advice are said as fully as fits (shorter forms, then the generic advice), then a long first
name is shortened, never the rest.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime

from service.domain.reminders.planning import (
    CONFIRMATION,
    NEXT_DAY_CHECK_IN,
    WAITLIST_OFFER,
    is_before_kind,
)
from service.domain.time import in_zone

SMS_LIMIT = 160
OPT_OUT_TEXT = "Reply STOP to opt out."

FORBIDDEN_WORDS: tuple[str, ...] = (
    # drugs and products
    "ketamine", "esketamine", "arketamine", "ketalar", "spravato", "medication",
    "medications", "prescription", "dose", "doses", "dosing", "sedative", "sedation",
    "anesthesia", "anaesthesia", "anesthetic", "psychedelic", "nasal spray",
    # treatments and programs
    "infusion", "infusions", "iv", "i.v.", "intravenous", "drip", "treatment", "treatments",
    "therapy", "therapies", "rems", "dissociation", "dissociative",
    # diagnoses and clinical areas
    "depression", "depressed", "depressive", "anxiety", "anxious", "psychiatric",
    "psychiatry", "psychiatrist", "mental health", "ptsd", "ocd", "bipolar", "trd",
    "treatment-resistant", "suicide", "suicidal", "self-harm",
)


def _word_pattern(words: Iterable[str]) -> re.Pattern[str]:
    """Whole words (an optional plural s) in a text folded by ``_fold``; a space in a phrase
    matches any run of spaces or hyphens, a hyphen also matches nothing (self-harm,
    selfharm).

    Case-sensitive, on lower-cased words and text, rather than ``re.IGNORECASE``: the regex
    engine skips an alternative whose first character differs at once only for a plain
    literal, so this is 3-5 times faster on a whole message (every reminder is checked
    before it is sent) and finds the same words."""

    def one(word: str) -> str:
        pattern = ""
        for token in re.split(r"([ \-])", word):
            if token == " ":
                pattern += r"[\s\-]+"
            elif token == "-":
                pattern += r"[\s\-]*"
            else:
                pattern += re.escape(token)
        return pattern

    alternatives = sorted((one(w.lower()) for w in words), key=len, reverse=True)
    return re.compile(r"(?<![a-z0-9])(?:" + "|".join(alternatives) + r")s?(?![a-z0-9])")


# The characters that ``re.IGNORECASE`` takes for an ASCII letter while ``str.lower`` keeps
# them apart (or, for the dotted capital I, makes two characters of): dotless i, dotted
# capital I, long s, Kelvin sign.
_CASE_FOLDS = str.maketrans({"\u0131": "i", "\u0130": "i", "\u017f": "s", "\u212a": "k"})


def _fold(text: str) -> str:
    """``text`` as the forbidden-word pattern reads it: NFKC (full-width letters, ligatures),
    then lower case, with the letters ``re.IGNORECASE`` would match an ASCII letter with."""
    return unicodedata.normalize("NFKC", text).translate(_CASE_FOLDS).lower()


_FORBIDDEN = _word_pattern(FORBIDDEN_WORDS)


class ContentRefused(ValueError):
    """A template or message breaks the content rules (the words found, never the text)."""

    def __init__(self, reason: str, problems: list[str]) -> None:
        super().__init__(f"{reason}: {', '.join(problems)}")
        self.reason = reason
        self.problems = problems


def forbidden_words(text: str) -> list[str]:
    """The forbidden words in ``text`` (lower-cased, in order of appearance, unique)."""
    found: list[str] = []
    for match in _FORBIDDEN.finditer(_fold(text)):
        word = re.sub(r"[\s\-]+", " ", match.group(0))
        if word not in found:
            found.append(word)
    return found


def check(text: str, what: str = "message") -> None:
    words = forbidden_words(text)
    if words:
        raise ContentRefused("forbidden_words", [f"{what}: {w}" for w in words])


# Templates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    subject: str
    email: str
    sms: str


TEMPLATES: Mapping[str, Template] = {
    CONFIRMATION: Template(
        subject="Your visit with {clinic} is booked",
        email=("Hi {first_name},\n\n"
               "Your visit with {clinic} is booked for {when_long}.\n\n"
               "{preparation}\n\n"
               "To change or cancel it, call us at {phone}.\n\n"
               "{clinic}\n"),
        sms=("Hi {first_name}, your visit with {clinic} is booked for {when}. "
             "To change it call {phone}. " + OPT_OUT_TEXT),
    ),
    "before": Template(
        subject="Reminder: your visit on {date}",
        email=("Hi {first_name},\n\n"
               "This is a reminder of your visit with {clinic} on {when_long}.\n\n"
               "{preparation}\n\n"
               "To change or cancel it, call us at {phone}.\n\n"
               "{clinic}\n"),
        sms=("Hi {first_name}, your {clinic} visit is {when}. {sms_preparation} "
             "{phone}. " + OPT_OUT_TEXT),
    ),
    NEXT_DAY_CHECK_IN: Template(
        subject="How are you feeling?",
        email=("Hi {first_name},\n\n"
               "How are you feeling after yesterday's visit? If you have any questions or "
               "concerns, call us at {phone}.\n\n"
               "{clinic}\n"),
        sms=("Hi {first_name}, how are you feeling after yesterday's visit? Questions? "
             "Call {clinic} at {phone}. " + OPT_OUT_TEXT),
    ),
    WAITLIST_OFFER: Template(
        subject="A visit time opened up with {clinic}",
        email=("Hi {first_name},\n\n"
               "A visit time you were waiting for opened up with {clinic}: {when_long}. "
               "It is held for you for a short while. To take it or let it go, use your "
               "patient portal or call us at {phone}.\n\n"
               "{clinic}\n"),
        sms=("Hi {first_name}, a {clinic} visit opened: {when}, held briefly. "
             "Book it online or call {phone}. " + OPT_OUT_TEXT),
    ),
}

# Generic advice only: nothing in it tells what the visit is for.
PREPARATION: Mapping[str, tuple[str, str]] = {
    # (email, sms)
    "in_person": ("Before your visit, please eat lightly, stay hydrated and arrange a ride "
                  "home.", "Eat light, hydrate, plan a ride home."),
    "telehealth": ("Please join from a quiet, private place a few minutes early.",
                   "Join from a quiet, private place."),
}


def template_key(kind: str) -> str:
    return "before" if is_before_kind(kind) else kind


@dataclass(frozen=True)
class MessageFacts:
    """Everything a message may say (and nothing else).

    The whole stay of a visit in the clinic: ``arrive_at`` (default: the start), ``leaves_at``
    (None: not shown, as for a video visit), ``with_driver`` (a treatment: arrive with a
    driver). ``advice`` and ``after_care``: the service type's PHI-free reminder wordings
    (none: the generic advice)."""

    first_name: str
    starts_at: datetime
    zone: str
    clinic_name: str
    clinic_phone: str
    in_person: bool
    arrive_at: datetime | None = None
    leaves_at: datetime | None = None
    with_driver: bool = False
    advice: tuple[str, ...] = ()
    after_care: tuple[str, ...] = ()


@dataclass(frozen=True)
class Message:
    subject: str
    email: str
    sms: str


def display_phone(phone: str) -> str:
    """+16025550100 -> 602-555-0100 (North American numbers); others as given."""
    if re.fullmatch(r"\+1\d{10}", phone):
        return f"{phone[2:5]}-{phone[5:8]}-{phone[8:]}"
    return phone


# GSM 03.38 basic character set: anything else turns an SMS into UCS-2 (70 characters).
GSM7 = frozenset("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
                 "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")


_LATIN = str.maketrans("ŁłĐđıŒœ", "LlDdiOo")


def gsm_name(name: str) -> str:
    """The first name in GSM-7 characters (accents dropped where needed)."""
    name = " ".join(name.split())
    if GSM7.issuperset(name):
        return name
    plain = "".join(ch for ch in unicodedata.normalize("NFKD", name.translate(_LATIN))
                    if not unicodedata.combining(ch))
    return "".join(ch for ch in plain if ch in GSM7).strip()


def _clock(instant: datetime, zone: str) -> str:
    return in_zone(instant, zone).strftime("%I:%M %p").lstrip("0")


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _email_preparation(facts: MessageFacts, generic: str) -> str:
    """The stay (arrive, start, leave, driver), then the service type's advice before and
    after the visit (or the generic advice)."""
    parts: list[str] = []
    if facts.leaves_at is not None:
        zone_abbr = in_zone(facts.starts_at, facts.zone).strftime("%Z")
        stay = (f"Please arrive by {_clock(facts.arrive_at or facts.starts_at, facts.zone)}. "
                f"Your visit starts at {_clock(facts.starts_at, facts.zone)} {zone_abbr} and "
                f"you may leave at about {_clock(facts.leaves_at, facts.zone)} {zone_abbr}.")
        if facts.with_driver:
            stay += " Please arrive with a driver who will take you home."
        parts.append(stay)
    if facts.advice or facts.after_care:
        if facts.advice:
            parts.append("Before your visit:\n" + "\n".join(
                f"- {_sentence(a)}" for a in facts.advice))
        if facts.after_care:
            parts.append("After your visit:\n" + "\n".join(
                f"- {_sentence(a)}" for a in facts.after_care))
    else:
        parts.append(generic)
    return "\n\n".join(parts)


def _sms_preparations(facts: MessageFacts, generic: str) -> list[str]:
    """What the SMS may say about the stay and preparation, richest first: the first that
    fits with the whole first name is sent (the generic advice last)."""
    options: list[str] = []
    if facts.leaves_at is not None:
        arrive = _clock(facts.arrive_at or facts.starts_at, facts.zone)
        if arrive[-2:] == _clock(facts.starts_at, facts.zone)[-2:]:
            arrive = arrive[:-3]  # "10:45", as the visit's time beside it says AM or PM
        leave = _clock(facts.leaves_at, facts.zone)
        driver = " with a driver" if facts.with_driver else ""
        stay = f"Arrive {arrive}{driver}; leave about {leave}."
        options += [f"{stay} {_sentence(a)}" for a in facts.advice[:1]]
        options.append(stay)
        options.append(f"Leave about {leave}" + ("; bring a driver." if facts.with_driver
                                                  else "."))
    options += [_sentence(a) for a in facts.advice[:1]]
    options.append(generic)
    return options


def _values(facts: MessageFacts, *, email: bool = True) -> dict[str, str]:
    """The templates' fields; the email's ``preparation`` (the stay and the advice, a dozen
    clock readings) only with ``email``: an SMS words its own (``_sms_preparations``)."""
    local = in_zone(facts.starts_at, facts.zone)
    hour = local.strftime("%I:%M %p").lstrip("0")
    zone_abbr = local.strftime("%Z")
    preparation = PREPARATION["in_person" if facts.in_person else "telehealth"]
    values = {
        "first_name": facts.first_name.strip(),
        "clinic": facts.clinic_name,
        "phone": display_phone(facts.clinic_phone),
        "date": f"{local:%A, %B} {local.day}",
        "when": f"{local:%a %b} {local.day}, {hour} {zone_abbr}",
        "when_long": f"{local:%A, %B} {local.day}, {local.year} at {hour} {zone_abbr}",
        "sms_preparation": preparation[1],
    }
    if email:
        values["preparation"] = _email_preparation(facts, preparation[0])
    return values


def _fit_sms(template: str, values: dict[str, str], options: list[str] | None = None) -> str:
    name = gsm_name(values["first_name"])
    for option in options or ():
        # The stay and the service type's advice, only where they fit with the whole name.
        text = template.format(**{**values, "first_name": name, "sms_preparation": option})
        if len(text) <= SMS_LIMIT and GSM7.issuperset(text):
            return text
    text = template.format(**{**values, "first_name": name})
    if len(text) > SMS_LIMIT:
        room = SMS_LIMIT - len(template.format(**{**values, "first_name": ""}))
        if room < 1:
            raise ContentRefused("sms_too_long", [f"{len(text)} characters"])
        text = template.format(**{**values, "first_name": name[:room].rstrip()})
    if not GSM7.issuperset(text):
        raise ContentRefused("sms_not_gsm7", ["characters outside GSM-7"])
    return text


def render(kind: str, facts: MessageFacts, templates: Mapping[str, Template] = TEMPLATES, *,
           channel: str | None = None) -> Message:
    """The texts of a reminder, checked (raises ContentRefused): for ``channel`` "sms" only
    the SMS, for "email" only the subject and the email, by default all three."""
    template = templates[template_key(kind)]
    email = channel in (None, "email")
    values = _values(facts, email=email)
    message = Message(subject=template.subject.format(**values) if email else "",
                      email=template.email.format(**values) if email else "",
                      sms=_fit_sms(template.sms, values, _sms_preparations(
                          facts, values["sms_preparation"])) if channel != "email" else "")
    for field in fields(message):
        text = getattr(message, field.name)
        if text:  # a channel's text not rendered ("") has nothing to find
            check(text, field.name)
    if channel != "email" and (len(message.sms) > SMS_LIMIT
                               or OPT_OUT_TEXT not in message.sms):
        raise ContentRefused("sms_too_long", [f"{len(message.sms)} characters"])
    return message


SAMPLE_NAME = "Maximiliana"
"""A long-ish first name: every template must fit it in an SMS without shortening it."""


def check_templates(templates: Mapping[str, Template] = TEMPLATES, *, clinic_name: str,
                    clinic_phone: str,
                    preparation: Mapping[str, tuple[str, str]] = PREPARATION) -> None:
    """Refuse templates (or a clinic alias) that name a drug, diagnosis or treatment, or
    whose SMS does not fit 160 characters with the opt-out text. Run at start-up."""
    problems: list[str] = []
    for key, template in templates.items():
        for field in fields(template):
            problems += [f"{key}.{field.name}: {w}"
                         for w in forbidden_words(getattr(template, field.name))]
        if OPT_OUT_TEXT not in template.sms:
            problems.append(f"{key}.sms: no opt-out text")
    for key, texts in preparation.items():
        problems += [f"preparation.{key}: {w}" for w in forbidden_words(" ".join(texts))]
    problems += [f"clinic name: {w}" for w in forbidden_words(clinic_name)]
    if problems:
        raise ContentRefused("forbidden_words", problems)
    samples = [datetime(2026, 1, 14, 17, 30, tzinfo=UTC), datetime(2026, 9, 30, 19, 45,
                                                                      tzinfo=UTC)]
    for key, template in templates.items():
        for starts_at in samples:
            for zone in ("America/Phoenix", "America/Denver"):
                for in_person in (True, False):
                    facts = MessageFacts(SAMPLE_NAME, starts_at, zone, clinic_name,
                                         clinic_phone, in_person)
                    values = _values(facts)
                    sms = template.sms.format(**values)
                    if len(sms) > SMS_LIMIT:
                        problems.append(f"{key}.sms: {len(sms)} characters")
                    elif any(ch not in GSM7 for ch in sms):
                        problems.append(f"{key}.sms: characters outside GSM-7")
                    try:
                        render(key if key != "before" else "before_24h", facts, templates)
                    except ContentRefused as refused:
                        problems += [f"{key}: {p}" for p in refused.problems]
    if problems:
        raise ContentRefused("template_check_failed", sorted(set(problems)))
