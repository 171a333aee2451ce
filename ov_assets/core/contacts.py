"""Phones and e-mails (CONTRACT §4 soft rules): a phone is valid when ``phonenumbers`` (Google's
libphonenumber metadata) says it is a valid Colombian (+57) number, and its E.164 form goes to
the tables' derived ``telefono_e164`` / ``celular_e164`` columns; an e-mail is valid when
``email-validator`` accepts its syntax (no DNS).

Both libraries cost ~20 us a call, as much as every other rule of a record together, and nearly
every record holds distinct values. So the usual forms take a fast path that reaches the same
verdict from the same source: a phone of 10 digits (optionally 57/+57, spaces, dashes, dots,
brackets) is checked against the region's own metadata patterns, exactly as
``phonenumbers.is_valid_number`` checks a parsed number; an e-mail whose local part is a plain
dot-atom needs only its domain checked by ``email-validator`` (cached per domain). Every other
string goes through the library itself, cached per distinct string. Tests compare both paths
with the libraries on tables and generated strings.
"""

from __future__ import annotations

import re
from functools import lru_cache

import email_validator
import phonenumbers

REGION = "CO"
COUNTRY_CODE = 57

_META = phonenumbers.PhoneMetadata.metadata_for_region(REGION)
assert _META is not None and _META.general_desc is not None  # shipped with phonenumbers
# The number types phonenumbers tries, in its own order (``number_type``): a national number is
# valid when it matches the general description and at least one of them.
_TYPE_DESCS = [
    getattr(_META, name)
    for name in (
        "premium_rate",
        "toll_free",
        "shared_cost",
        "voip",
        "personal_number",
        "pager",
        "uan",
        "voicemail",
        "fixed_line",
        "mobile",
    )
]


def _pattern_for_length(descs: list[phonenumbers.PhoneNumberDesc | None], length: int) -> re.Pattern[str] | None:
    """One pattern matching a national number of ``length`` digits when any of ``descs`` does
    (a description lists its possible lengths; none listed means any)."""
    parts = [
        f"(?:{d.national_number_pattern})"
        for d in descs
        if d is not None and d.national_number_pattern and (not d.possible_length or length in d.possible_length)
    ]
    return re.compile("|".join(parts)) if parts else None


_GENERAL_10 = _pattern_for_length([_META.general_desc], 10)
_TYPES_10 = _pattern_for_length(_TYPE_DESCS, 10)
assert _GENERAL_10 is not None and _TYPES_10 is not None  # Colombia's numbers have 10 digits
# The fast form: 10 national digits (a mobile 3xx, a landline 60x), optionally after 57 or +57.
# One match answers both questions: the form (else the library parses the string) and, in
# group ``valid``, the national number when it matches the general description and a type.
_FAST_PHONE = re.compile(
    rf"(?:\+?57)?(?:(?=[36][0-9]{{9}}\Z)(?=(?:{_GENERAL_10.pattern})\Z)(?P<valid>{_TYPES_10.pattern})|[36][0-9]{{9}})"
)
_PHONE_NOISE = re.compile(r"[ \-().]")


def phone_e164(value: str) -> str | None:
    """The E.164 form (``+57...``) of a valid Colombian phone number, else None (empty, not a
    number, not valid for Colombia: too short, too long, an unassigned range)."""
    if not value:
        return None
    m = _FAST_PHONE.fullmatch(value if value.isalnum() else _PHONE_NOISE.sub("", value))
    if m is None:
        return _phone_e164_parsed(value)
    nsn = m.group("valid")
    return None if nsn is None else "+57" + nsn


@lru_cache(maxsize=65536)
def _phone_e164_parsed(value: str) -> str | None:
    """``phonenumbers`` itself on a string outside the fast form, once per distinct string."""
    try:
        number = phonenumbers.parse(value, REGION)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number_for_region(number, REGION):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# A local part email-validator accepts as a dot-atom whatever the domain, and a domain made of
# letters, digits and inner hyphens: such an address is valid exactly when its domain is (and
# the lengths below hold).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_SIMPLE_EMAIL = re.compile(rf"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@({_LABEL}(?:\.{_LABEL})+)")
_EMAIL_MAX = 254  # email_validator.rfc_constants.EMAIL_MAX_LENGTH
_LOCAL_MAX = 64  # email_validator.rfc_constants.LOCAL_PART_MAX_LENGTH
_DOMAINS: dict[str, bool] = {}  # domain -> email-validator's verdict (few distinct domains)


def email_valid(value: str) -> bool:
    """Whether ``email-validator`` accepts ``value``'s syntax (``check_deliverability=False``)."""
    m = _SIMPLE_EMAIL.fullmatch(value)
    if m is not None and len(value) <= _EMAIL_MAX and m.start(1) <= _LOCAL_MAX + 1:
        domain = m.group(1)
        ok = _DOMAINS.get(domain)
        if ok is None:
            if len(_DOMAINS) >= 65536:
                _DOMAINS.clear()
            ok = _DOMAINS[domain] = _email_valid_full(f"a@{domain}")
        return ok
    return _email_valid_full(value)


@lru_cache(maxsize=65536)
def _email_valid_full(value: str) -> bool:
    """``email-validator`` itself, once per distinct string (a domain, or an unusual address)."""
    try:
        email_validator.validate_email(value, check_deliverability=False)
    except email_validator.EmailNotValidError:
        return False
    return True
