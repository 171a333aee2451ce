"""Near-duplicate PQRs (issue 19): the same customer filing the same complaint again a few days
later under a new radicado. Pure pairing and scoring, no I/O: ``warehouse.near_duplicates``
fetches the candidates and stores the pairs, ``defs/checks`` reports them (counts only).

Two PQRs of one empresa are a pair when they share the NIC (the electricity account) or the
identity document (the customer), their filing days are at most ``max_days`` apart, and their
complaint texts score at least ``threshold`` (0-100). The text compared is the record's
``cuerpo_reclamacion`` (CONTRACT §3), the only free-text field the customer writes about the
problem: ``comentarios`` and ``finalizar`` are the company's, ``lectura`` is a meter reading.
Texts are folded (case, accents, punctuation) and scored with rapidfuzz's ``token_sort_ratio``:
word order does not matter (a reworded complaint keeps its words), while a short text is not a
perfect match of every longer one that contains it (as ``token_set_ratio`` would make it).
A blank key (NIC or document) or a blank text never pairs.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from rapidfuzz import fuzz, utils

TEXT_FIELD = "cuerpo_reclamacion"
RULE_NIC = "same_nic"
RULE_DOCUMENTO = "same_documento"
RULE_BOTH = "same_nic_and_documento"
RULES = (RULE_NIC, RULE_DOCUMENTO, RULE_BOTH)


@dataclass(frozen=True)
class Filing:
    """What the pairing needs of one PQR (one row of ``ov_{empresa}``)."""

    numero_radicado: str
    fecha: dt.datetime
    nic: str
    documento: str
    text: str


@dataclass(frozen=True)
class Pair:
    """One near-duplicate pair, stored once: ``numero_radicado`` < ``other_radicado`` (code points)."""

    numero_radicado: str
    other_radicado: str
    days_apart: int
    similarity: float
    rule: str


def fold(text: str) -> str:
    """Lower case, no accents, punctuation as spaces, single spaces: what is compared."""
    if text.isascii():  # (most texts: NFKD leaves ASCII as it is, and it has no accents)
        bare = text
    else:
        decomposed = unicodedata.normalize("NFKD", text)
        bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(utils.default_process(bare).split())


def similarity(a: str, b: str) -> float:
    """0-100: how alike two complaint texts are once folded (0 when either is blank)."""
    fa, fb = fold(a), fold(b)
    if not fa or not fb:
        return 0.0
    return float(fuzz.token_sort_ratio(fa, fb))


def days_apart(a: dt.datetime, b: dt.datetime) -> int:
    """Calendar days between the two filings (their partitions), whatever the hour."""
    return abs((a.date() - b.date()).days)


def _rule(a: Filing, b: Filing) -> str | None:
    nic = bool(a.nic) and a.nic == b.nic
    doc = bool(a.documento) and a.documento == b.documento
    if nic and doc:
        return RULE_BOTH
    return RULE_NIC if nic else RULE_DOCUMENTO if doc else None


def find_pairs(new: Iterable[Filing], known: Iterable[Filing], threshold: float, max_days: int) -> list[Pair]:
    """Every pair of a ``new`` filing with another filing (of ``new`` or ``known``; a radicado
    in both counts once, as new) that shares its NIC or document, lies within ``max_days`` and
    whose text scores at least ``threshold``. Sorted, each pair once."""
    fresh = {f.numero_radicado: f for f in new}
    everyone = {f.numero_radicado: f for f in known} | fresh
    by_key: dict[tuple[str, str], list[Filing]] = defaultdict(list)
    for f in everyone.values():
        if f.nic:
            by_key[("nic", f.nic)].append(f)
        if f.documento:
            by_key[("doc", f.documento)].append(f)
    # Folded only where compared: a filing that shares no NIC or document is in no pair.
    paired = {f.numero_radicado for group in by_key.values() if len(group) > 1 for f in group}
    folded = {r: fold(everyone[r].text) for r in paired}
    pairs: dict[tuple[str, str], Pair] = {}
    for a in fresh.values():
        if not folded.get(a.numero_radicado):
            continue
        keys = ([("nic", a.nic)] if a.nic else []) + ([("doc", a.documento)] if a.documento else [])
        for key in keys:
            for b in by_key[key]:
                ids = tuple(sorted((a.numero_radicado, b.numero_radicado)))
                if ids[0] == ids[1] or ids in pairs or not folded[b.numero_radicado]:
                    continue
                apart = days_apart(a.fecha, b.fecha)
                if apart > max_days:
                    continue
                score = float(fuzz.token_sort_ratio(folded[a.numero_radicado], folded[b.numero_radicado]))
                rule = _rule(a, b)
                if score >= threshold and rule is not None:
                    pairs[(ids[0], ids[1])] = Pair(ids[0], ids[1], apart, round(score, 2), rule)
    return [pairs[k] for k in sorted(pairs)]
