"""The data dictionary: one description for every table, view and column ov-assets owns in
``data_general``, and for every column of the ``pqr_records`` frame.

One source, three readers, so the descriptions never drift apart: the database's comments
(``dictionary_render.comments_sql``, applied by the migrations' repeatable step whenever it
changes: a new description needs no new migration), the column schemas of the assets in the
Dagster UI, and ``docs/data-dictionary.md``. Tests hold each reader equal to this.

``personal`` marks what ``ov_pqr_masked`` leaves out and only ``ov_analyst_personal`` reads:
names, documents, phones, e-mails and every field a customer fills with free text or a file
name. The NIC stays visible (it names an electricity account, not a person), but like every
field of ``contract.PERSONAL_FIELDS`` it never reaches logs or Dagster metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ov_assets.core.contract import EMPRESA_DISPLAY
from ov_assets.core.records import FRAME_SCHEMA

SCHEMA = "data_general"
ANALYST_ROLE = "ov_analyst"
PERSONAL_ROLE = "ov_analyst_personal"


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # as PostgreSQL's format_type() writes it
    description: str
    personal: bool = False


@dataclass(frozen=True)
class Relation:
    name: str
    kind: Literal["table", "view"]
    description: str
    columns: tuple[Column, ...]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name}.{name}")


_V50, _TS, _TSTZ = "character varying(50)", "timestamp without time zone", "timestamp with time zone"

# The 18 business fields (CONTRACT §3): (type in the tables, description, personal).
BUSINESS: dict[str, tuple[str, str, bool]] = {
    "nic": (
        _V50,
        "NIC (Número de Identificación del Cliente): the electricity account the PQR is about. "
        "5-12 digits expected (warning nic_invalid otherwise).",
        False,
    ),
    "fecha": (_TS, "Filing time shown by the portal, Bogotá local time; its day is the PQR's partition.", False),
    "documento_identidad": (_V50, "Identity document of the customer (cédula, or NIT as digits-DV).", True),
    "nombres_apellidos": ("text", "Full name of the customer.", True),
    "lectura": ("text", "Meter reading the customer reported, as typed (free text).", True),
    "correo_electronico": ("character varying(320)", "E-mail address of the customer.", True),
    "telefono": (_V50, "Landline phone of the customer, as typed.", True),
    "celular": (_V50, "Mobile phone of the customer, as typed.", True),
    "tipo_pqr": ("text", "PQR type chosen on the portal (petición, queja, reclamo, ...).", False),
    "canal_respuesta": ("text", "Channel through which the customer asked to be answered.", False),
    "documento_prueba": ("text", "Name of the evidence file the customer attached, as the portal shows it.", True),
    "cuerpo_reclamacion": ("text", "Text of the complaint as the customer wrote it (free text).", True),
    "numero_radicado": (_V50, "Filing number the portal assigned: identifies the PQR within its empresa.", False),
    "estado_solicitud": ("text", "Status of the PQR on the portal at extraction time (e.g. Finalizado).", False),
    "finalizar": ("text", "The portal's 'Finalizar' field as shown (free text, usually empty).", True),
    "adjuntar_archivo": ("text", "Name of a further file the customer attached, as the portal shows it.", True),
    "numero_reclamo_sgc": (
        _V50,
        "Claim number in the company's SGC (commercial system); empty when the portal shows none.",
        False,
    ),
    "comentarios": ("text", "Comments the portal shows on the PQR (free text).", True),
}


def _business(name: str) -> Column:
    typ, description, personal = BUSINESS[name]
    return Column(name, typ, description, personal)


_ROW_COLUMNS: tuple[Column, ...] = (
    Column("id", "bigint", "Surrogate key of the row (identity; SERIAL in tables adopted from the old system)."),
    *(
        _business(f)
        for f in (
            "numero_radicado",
            "fecha",
            "nic",
            "documento_identidad",
            "nombres_apellidos",
            "lectura",
            "correo_electronico",
            "telefono",
            "celular",
            "tipo_pqr",
            "canal_respuesta",
            "documento_prueba",
            "cuerpo_reclamacion",
            "estado_solicitud",
            "finalizar",
            "adjuntar_archivo",
            "numero_reclamo_sgc",
            "comentarios",
        )
    ),
    Column(
        "hash_registro",
        "character varying(64)",
        "SHA-256 (hex) of the 18 canonical business fields (CONTRACT §4): any change of any field changes it.",
    ),
    Column(
        "fecha_extraccion",
        _TS,
        "Extraction time of the stored version, Bogotá local time (for rows adopted "
        "from the old system: its load time).",
    ),
    Column(
        "archivo_origen", "text", "Landing file name of the stored version; NULL for rows adopted from the old system."
    ),
    Column("warnings", "jsonb", 'JSON array of soft-rule codes (CONTRACT §4), e.g. ["email_invalid"].'),
    Column(
        "archivos_s3_urls", "jsonb", "JSON array of the PQR's stored files: {file_type, filename, s3_url, sha256} each."
    ),
    Column("procesado_flag", "boolean", "TRUE once every file of the stored version is in the bucket."),
    Column("created_at", _TSTZ, "When ov-assets first inserted the row."),
    Column("updated_at", _TSTZ, "When the row last changed (a newer version, or its files stored)."),
    # Derived, not part of hash_registro (migration 011).
    *(
        Column(
            f"{f}_e164",
            "character varying(16)",
            f"{f} in E.164 form (+57...) when phonenumbers finds it a valid Colombian number; NULL when it is "
            f"empty or invalid (warning {f}_invalid). Not part of hash_registro.",
            personal=True,
        )
        for f in ("telefono", "celular")
    ),
)


def _pqr_table(empresa: str) -> Relation:
    name = EMPRESA_DISPLAY[empresa]
    return Relation(
        f"ov_{empresa}",
        "table",
        f"Current state of {name}'s Oficina Virtual PQRs: one row per numero_radicado, the latest "
        "extraction (CONTRACT §6). Personal columns: readable by ov_analyst_personal only; analysts "
        "use ov_pqr_masked.",
        _ROW_COLUMNS,
    )


def _history_table(empresa: str) -> Relation:
    name = EMPRESA_DISPLAY[empresa]
    return Relation(
        f"ov_{empresa}_history",
        "table",
        f"Previous versions of {name}'s PQRs: one row each time a row of ov_{empresa} is replaced.",
        (
            Column("history_id", "bigint", "Surrogate key of the history row."),
            Column("replaced_at", _TSTZ, "When this version was replaced."),
            Column("replaced_by_run", "text", "Dagster run id of the load that replaced it."),
            *_ROW_COLUMNS,
        ),
    )


_EMPRESA = Column("empresa", "text", "afinia or aire.")
_DATE = Column("partition_date", "date", "Partition day (the day of the PQRs' fecha, Bogotá).")

OV_PQR = Relation(
    "ov_pqr",
    "view",
    "ov_afinia and ov_aire in one view, with an empresa column. Holds personal data: ov_analyst_personal only.",
    (_EMPRESA, *_ROW_COLUMNS),
)

OV_PQR_MASKED = Relation(
    "ov_pqr_masked",
    "view",
    "ov_pqr without personal data (no names, documents, phones, e-mails, free text or file names): "
    "what ov_analyst reads. Join back to ov_pqr on (empresa, numero_radicado) with ov_analyst_personal.",
    (
        _EMPRESA,
        *(
            OV_PQR.column(c)
            for c in (
                "numero_radicado",
                "numero_reclamo_sgc",
                "nic",
                "fecha",
                "tipo_pqr",
                "canal_respuesta",
                "estado_solicitud",
                "warnings",
            )
        ),
        Column(
            "archivos_count",
            "integer",
            "Number of files stored for the PQR (elements of archivos_s3_urls); NULL when the row holds no list.",
        ),
        Column("adjuntos_count", "integer", "Number of those files that are attachments (file_type attachment)."),
        *(OV_PQR.column(c) for c in ("fecha_extraccion", "procesado_flag", "created_at", "updated_at")),
    ),
)

_REGISTRY = Relation(
    "s3_files_registry",
    "table",
    "One row per object ov-assets stored (or found already stored) in the bucket (CONTRACT §6-§7).",
    (
        Column("id", "bigint", "Surrogate key; the object's registry_id metadata."),
        _EMPRESA,
        Column(
            "numero_radicado",
            _V50,
            "The PQR the object belongs to (with empresa; never joined on the SGC). "
            "NULL only for an object adopted from the old system whose PQR is not "
            "known yet.",
        ),
        Column("numero_reclamo_sgc", _V50, "The PQR's SGC claim number (old rows may hold the radicado)."),
        Column("filename", "text", "Landing file name of the object."),
        Column("file_type", "text", "json (the record), pdf (the detail page) or attachment."),
        Column("content_type", "text", "MIME type stored with the object."),
        Column("file_size", "bigint", "Size in bytes."),
        Column("file_hash", "character(64)", "SHA-256 (hex) of the whole file."),
        Column("s3_bucket", "text", "Bucket name ('local' for the local object store)."),
        Column("s3_key", "text", "Object key (unique within the bucket)."),
        Column("s3_url", "text", "s3://bucket/key (file://... for the local object store)."),
        Column("upload_status", "text", "pending, uploaded, error or pre_existing (already there, same SHA-256)."),
        Column("upload_source", "text", "bot, manual, pre_existing or migration."),
        Column("attempts", "integer", "Upload attempts so far."),
        Column("last_error", "text", "The last upload error (no personal data)."),
        Column("metadata", "jsonb", "Bookkeeping of the upload (partition_date, layout, ...)."),
        Column("created_at", _TSTZ, "When the row was registered."),
        Column("updated_at", _TSTZ, "When the row last changed."),
        Column("uploaded_at", _TSTZ, "When the object was stored or found stored."),
    ),
)

_REJECTS = Relation(
    "ov_rejects",
    "table",
    "Landing files or records that could not be loaded: one row per (empresa, file, reason) (CONTRACT §4).",
    (
        Column("id", "bigint", "Surrogate key."),
        _EMPRESA,
        _DATE,
        Column("file_name", "text", "Landing file name."),
        Column("file_sha256", "character(64)", "SHA-256 (hex) of the file; NULL when it was rejected unread."),
        Column("numero_radicado", _V50, "The PQR's radicado, when it could be read."),
        Column("reason_code", "text", "Reject reason code (empty_file, invalid_json, missing_required, ...)."),
        Column("detail", "text", "What was wrong, naming the field, never its value."),
        Column("first_seen_at", _TSTZ, "First load that saw the reject."),
        Column("last_seen_at", _TSTZ, "Latest load that saw the reject."),
        Column("resolved_at", _TSTZ, "When the same file name later loaded; NULL while still rejected."),
    ),
)

_AUDIT = Relation(
    "ov_load_audit",
    "table",
    "One row per partition and load run: what the load saw and did.",
    (
        Column("id", "bigint", "Surrogate key."),
        Column("run_id", "text", "Dagster run id."),
        _EMPRESA,
        _DATE,
        Column("files_seen", "integer", "Record files in the partition."),
        Column("records_valid", "integer", "Valid versions (several per radicado possible)."),
        Column("db_inserted", "integer", "Rows inserted."),
        Column("db_updated", "integer", "Rows replaced by a newer version (the old one went to history)."),
        Column("db_duplicates", "integer", "Winners already stored unchanged."),
        Column("rejected", "integer", "Rejected files or records."),
        Column("started_at", _TSTZ, "When the load of the partition started."),
        Column("finished_at", _TSTZ, "When it committed."),
    ),
)

_SLOTS = Relation(
    "portal_request_slots",
    "table",
    "Rate limit shared by every extraction: the next free request slot per portal.",
    (
        Column("portal", "text", "The portal's base URL, without credentials."),
        Column("next_slot", _TSTZ, "The next time a rate-limited request may start."),
        Column("updated_at", _TSTZ, "When a slot was last taken."),
    ),
)

_EXPORTS = Relation(
    "ov_report_exports",
    "table",
    "Loads whose consolidated reports the 23:45 archive has exported and verified.",
    (
        Column("audit_id", "bigint", "The ov_load_audit row exported."),
        _EMPRESA,
        _DATE,
        Column("exported_at", _TSTZ, "When the export was verified."),
    ),
)

_CLEANED = Relation(
    "ov_cleaned_partitions",
    "table",
    "Partitions some of whose archived landing files the cleanup deleted (their reports are merged, never rebuilt).",
    (_EMPRESA, _DATE, Column("first_cleaned_at", _TSTZ, "When the cleanup first deleted a file of it.")),
)

_QUALITY = Relation(
    "ov_quality_daily",
    "table",
    "Quality over time: one row per empresa and partition day, rewritten by every load of the partition "
    "(a rerun writes the same numbers). The pqr_quality_daily asset reports each row as metadata.",
    (
        _EMPRESA,
        Column("fecha", "date", "Partition day (the day of the PQRs' fecha, Bogotá)."),
        Column("files_seen", "integer", "Record files in the partition at its latest load (valid or rejected)."),
        Column("valid", "integer", "Valid record files (versions; several per radicado possible)."),
        Column("rejected", "integer", "Rejected record files (each has its ov_rejects row)."),
        Column(
            "rejected_by_reason",
            "jsonb",
            'Rejected files by reason code, from the ov_rejects rows the load saw, e.g. {"invalid_json": 2}.',
        ),
        Column(
            "warnings_by_code",
            "jsonb",
            'Valid record files carrying each soft-rule warning code (CONTRACT §4), e.g. {"email_invalid": 3}.',
        ),
        Column("reject_rate", "double precision", "rejected / files_seen (0 when no file)."),
        Column(
            "load_latency_s",
            "double precision",
            "Seconds from the extraction of a stored version to the load that stored it: the slowest of the "
            "latest load that stored any row; a load that stores nothing new keeps the value. NULL until a row "
            "is stored.",
        ),
        Column("loaded_at", _TSTZ, "When the latest load of the partition wrote these numbers (its transaction)."),
    ),
)

_NEAR_DUPLICATES = Relation(
    "ov_near_duplicates",
    "table",
    "Near-duplicate PQRs: two radicados of one empresa with the same NIC or identity document whose "
    "complaint texts are alike (at least OV_NEAR_DUP_SIMILARITY) and filed at most OV_NEAR_DUP_DAYS apart. "
    "Each pair once, numero_radicado < other_radicado; refreshed by every load of either PQR's partition.",
    (
        _EMPRESA,
        Column("numero_radicado", _V50, "The pair's first radicado (the smaller, compared by code point)."),
        Column("other_radicado", _V50, "The pair's second radicado."),
        Column("days_apart", "integer", "Calendar days between the two filings (fecha)."),
        Column(
            "similarity",
            "double precision",
            "Similarity of the two complaint texts, 0-100 (rapidfuzz token_sort_ratio after folding case, "
            "accents and punctuation).",
        ),
        Column("rule", "text", "What the two share: same_nic, same_documento or same_nic_and_documento."),
        Column("found_at", _TSTZ, "When the pair was first found."),
    ),
)

RELATIONS: tuple[Relation, ...] = (
    OV_PQR_MASKED,
    OV_PQR,
    _pqr_table("afinia"),
    _pqr_table("aire"),
    _history_table("afinia"),
    _history_table("aire"),
    _REGISTRY,
    _REJECTS,
    _AUDIT,
    _SLOTS,
    _EXPORTS,
    _CLEANED,
    _QUALITY,
    _NEAR_DUPLICATES,
)


def relation(name: str) -> Relation:
    for r in RELATIONS:
        if r.name == name:
            return r
    raise KeyError(name)


def personal_columns(name: str) -> tuple[str, ...]:
    """Columns of ``name`` only ``ov_analyst_personal`` may read."""
    return tuple(c.name for c in relation(name).columns if c.personal)


# The pqr_records frame (one row per record file, CONTRACT §4): its own columns; the business
# fields and the row columns it shares with the tables keep their descriptions.
_FRAME_OWN: dict[str, str] = {
    "empresa": _EMPRESA.description,
    "partition_date": _DATE.description,
    "file_name": "Landing file name of the record file.",
    "file_sha256": "SHA-256 (hex) of the record file; empty when it was rejected unread.",
    "file_size": "Size of the record file in bytes.",
    "status": "valid or rejected.",
    "reject_code": "Reject reason code of a rejected file or record (CONTRACT §4).",
    "reject_detail": "What was wrong, naming the field, never its value.",
    "fecha": "Filing time as canonical text, YYYY-MM-DDTHH:MM:SS, Bogotá local time.",
    "fecha_dt": "fecha parsed: the value the table's fecha column receives.",
    "warnings": "Soft-rule codes (CONTRACT §4) of the version.",
    "files": "The version's PDF and attachments: file_type, filename, size, sha256.",
    "is_winner": "True for the version the table keeps: latest extraction per numero_radicado, ties by "
    "greater file name.",
}


def frame_description(name: str) -> str:
    """The description of the ``pqr_records`` frame column ``name`` (KeyError when it has none)."""
    if name in _FRAME_OWN:
        return _FRAME_OWN[name]
    if name in BUSINESS:
        return BUSINESS[name][1]
    return relation("ov_afinia").column(name).description


FRAME_COLUMNS: tuple[tuple[str, str, str], ...] = tuple(
    (name, str(dtype), frame_description(name)) for name, dtype in FRAME_SCHEMA.items()
)
