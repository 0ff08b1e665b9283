"""The index: patients, studies, series, instances, and the AE table.

Every key of C-FIND tables 34 and 35 is a real column so a query never reads
a file and never walks a key/value table. Counts (Number of ... Related ...)
and Modalities In Study are kept up to date on write, because computing them
per query does not scale to millions of instances.

Column comments carry the DICOM tag. Schema changes only through numbered
migrations in ``migrations.py``.
"""

from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING, Any, Self, TypeVar

from peewee import (
    AutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    CompositeKey,
    DatabaseProxy,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    ModelDelete,
    ModelSelect,
    TextField,
)

database = DatabaseProxy()

if TYPE_CHECKING:
    _M = TypeVar("_M", bound=Model)

    class _Select(ModelSelect[_M]):
        """types-peewee has ``.tuples()`` return the model select (rows typed as
        models); its rows are tuples."""

        def tuples(self, as_tuple: bool = True) -> _Select[Any]: ...

    # A model's select, for annotations outside db/ (peewee stays under db/).
    SelectOf = _Select


def utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC).replace(tzinfo=None)


class BaseModel(Model):
    """The models' common Meta.

    peewee adds the implicit ``id`` primary key, each foreign key's ``<name>_id``
    and the backrefs when it builds a class; the bare annotations in the
    classes below declare them for the type checker. peewee does not read
    annotations, so the schema is unchanged.
    """

    if TYPE_CHECKING:
        # Corrections to types-peewee: the _Select above, and ``delete``, whose
        # stub (a Self-typed descriptor) mypy rejects at every call.
        @classmethod
        def select(cls, *fields: Any) -> _Select[Self]: ...

        @classmethod
        def delete(cls) -> ModelDelete: ...

    class Meta:
        database = database
        legacy_table_names = False


class Patient(BaseModel):
    id: AutoField[int]
    studies: ModelSelect[Study]  # backref of Study.patient
    patient_id = CharField(max_length=64, default="", index=True)  # (0010,0020) Patient ID
    issuer = CharField(max_length=64, default="")  # (0010,0021) Issuer of Patient ID
    patient_name = CharField(max_length=324, default="", index=True)  # (0010,0010)
    # Upper-cased copy for the case-insensitive person name matching option.
    patient_name_ci = CharField(max_length=324, default="", index=True)
    birth_date = CharField(max_length=8, default="", index=True)  # (0010,0030) DA
    birth_time = CharField(max_length=16, default="")  # (0010,0032) TM
    sex = CharField(max_length=16, default="")  # (0010,0040) CS
    age = CharField(max_length=4, default="")  # (0010,1010) AS (latest study)
    size = CharField(max_length=16, default="")  # (0010,1020) DS
    weight = CharField(max_length=16, default="")  # (0010,1030) DS
    charset = CharField(max_length=64, default="")  # (0008,0005) as received
    num_studies = IntegerField(default=0)  # (0020,1200)
    num_series = IntegerField(default=0)  # (0020,1202)
    num_instances = IntegerField(default=0)  # (0020,1204)
    private = BooleanField(default=False)  # DATA-6 private/public patient
    created = DateTimeField(default=utcnow)
    # Columns an edit set (comma-joined): a later image does not overwrite them.
    edited = CharField(max_length=256, default="")

    class Meta:
        indexes = ((("patient_id", "issuer"), True),)


class Study(BaseModel):
    id: AutoField[int]
    series: ModelSelect[Series]  # backref of Series.study
    study_instance_uid = CharField(max_length=64, unique=True)  # (0020,000D)
    patient = ForeignKeyField(Patient, backref="studies", on_delete="CASCADE", index=True)
    patient_id: ForeignKeyField[int]
    study_date = CharField(max_length=8, default="", index=True)  # (0008,0020) DA
    study_time = CharField(max_length=16, default="")  # (0008,0030) TM
    accession_number = CharField(max_length=16, default="", index=True)  # (0008,0050)
    study_id = CharField(max_length=16, default="", index=True)  # (0020,0010)
    referring_physician = CharField(max_length=324, default="")  # (0008,0090)
    reading_physician = CharField(max_length=324, default="")  # (0008,1060)
    study_description = CharField(max_length=64, default="")  # (0008,1030)
    institution_name = CharField(max_length=64, default="")  # (0008,0080)
    modalities = CharField(max_length=128, default="")  # (0008,0061) backslash-joined
    num_series = IntegerField(default=0)  # (0020,1206)
    num_instances = IntegerField(default=0)  # (0020,1208)
    size_bytes = BigIntegerField(default=0)
    charset = CharField(max_length=64, default="")  # (0008,0005)
    # Where the study's one folder lives: archive root + server-made folder.
    storage_root = TextField()
    folder = CharField(max_length=64)
    calling_ae = CharField(max_length=16, default="")
    received = DateTimeField(default=utcnow, index=True)
    updated = DateTimeField(default=utcnow)
    private = BooleanField(default=False)
    read = BooleanField(default=False)
    protected = BooleanField(default=False)  # never purged by the watermark
    purge_state = CharField(max_length=16, default="")  # "" or "purging" (two-phase purge)
    edited = CharField(max_length=256, default="")  # as Patient.edited
    # The first instance row stored after an edit that does not carry the edit's
    # values yet (0: none); the daemon rewrites it and those after it.
    edit_from = IntegerField(default=0)


class Series(BaseModel):
    id: AutoField[int]
    instances: ModelSelect[Instance]  # backref of Instance.series
    series_instance_uid = CharField(max_length=64, unique=True)  # (0020,000E)
    study = ForeignKeyField(Study, backref="series", on_delete="CASCADE", index=True)
    study_id: ForeignKeyField[int]
    modality = CharField(max_length=16, default="", index=True)  # (0008,0060)
    series_number = IntegerField(null=True)  # (0020,0011) IS
    series_date = CharField(max_length=8, default="", index=True)  # (0008,0021) DA
    series_time = CharField(max_length=16, default="")  # (0008,0031) TM
    body_part = CharField(max_length=16, default="")  # (0018,0015)
    series_description = CharField(max_length=64, default="")  # (0008,103E)
    protocol_name = CharField(max_length=64, default="")  # (0018,1030)
    station_name = CharField(max_length=16, default="")  # (0008,1010), for routes by station
    num_instances = IntegerField(default=0)  # (0020,1209)


class Instance(BaseModel):
    id: AutoField[int]
    sop_instance_uid = CharField(max_length=64, unique=True)  # (0008,0018)
    # Indexed by instance_series_number (series_id, instance_number), migration 2;
    # a second index on series_id alone cost a page write per stored image (dropped by 11).
    series = ForeignKeyField(Series, backref="instances", on_delete="CASCADE", index=False)
    series_id: ForeignKeyField[int]
    sop_class_uid = CharField(max_length=64, default="")  # (0008,0016)
    instance_number = IntegerField(null=True)  # (0020,0013) IS
    creation_date = CharField(max_length=8, default="")  # (0008,0012)
    creation_time = CharField(max_length=16, default="")  # (0008,0013)
    overlay_number = CharField(max_length=12, default="")  # (0020,0022)
    curve_number = CharField(max_length=12, default="")  # (0020,0024)
    lut_number = CharField(max_length=12, default="")  # (0020,0026)
    samples_per_pixel = IntegerField(null=True)  # (0028,0002)
    rows = IntegerField(null=True)  # (0028,0010)
    columns = IntegerField(null=True)  # (0028,0011)
    bits_allocated = IntegerField(null=True)  # (0028,0100)
    bits_stored = IntegerField(null=True)  # (0028,0101)
    pixel_representation = IntegerField(null=True)  # (0028,0103)
    number_of_frames = IntegerField(null=True)  # (0028,0008)
    transfer_syntax_uid = CharField(max_length=64, default="")  # (0002,0010)
    file_name = CharField(max_length=64)  # server-made, inside the study folder
    file_size = BigIntegerField(default=0)
    digest = CharField(
        max_length=40, default=""
    )  # CRC-32 of the stored bytes: a filter, confirmed byte for byte
    native = BooleanField(default=False)  # StorageFormat=Native: no Part-10 header
    calling_ae = CharField(max_length=16, default="")
    received = DateTimeField(default=utcnow)


class ApplicationEntity(BaseModel):
    """The AE table of the conformance statement (PacsOne's 'applentity')."""

    id: AutoField[int]
    title = CharField(max_length=16, unique=True)
    hostname = CharField(max_length=255, default="")
    ipaddr = CharField(max_length=64, default="")
    port = IntegerField(null=True)
    allowaccess = BooleanField(default=True)
    archivedir = TextField(default="")
    description = CharField(max_length=255, default="")
    worklist = BooleanField(default=False)  # a Modality Worklist SCP the box polls (SCU-6)


class DirtyFolder(BaseModel):
    """Study folders written since the last consistency checkpoint.

    The start-up check looks only here, so it stays fast at millions of
    instances while still finding every file a crash left unindexed. Each
    process marks and clears its own rows (``owner``, its pid): a folder that
    two processes write stays marked until both have gone quiet.
    """

    id: AutoField[int]
    storage_root = TextField()
    folder = CharField(max_length=64)
    owner = CharField(max_length=32, default="")

    class Meta:
        indexes = ((("storage_root", "folder", "owner"), True),)


class QueueJob(BaseModel):
    """One outbound or long job of the durable work queue (``queue.py``).

    Made by migration 14, not by 0001's CORE_MODELS: a released migration is
    never changed, so a fresh database and an upgraded one get it the same way.
    Times are naive UTC, as elsewhere in the index.
    """

    id: AutoField[int]
    kind = CharField(max_length=16)  # queue.KINDS
    destination = CharField(max_length=64, default="")  # an AE title, a drive, "" for none
    state = CharField(max_length=16)  # queue.STATES
    attempts = IntegerField(default=0)  # claims so far
    failures = IntegerField(default=0)  # answered with a failure status, counted against retries
    retries = IntegerField(default=3)
    next_attempt = DateTimeField(null=True)  # due from then on; None once finished
    window = CharField(max_length=11, default="")  # "HH:MM-HH:MM" local, daily; "" any time
    last_error = CharField(max_length=300, default="")  # one line
    done = IntegerField(default=0)
    total = IntegerField(default=0)
    bytes_done = BigIntegerField(default=0)
    created = DateTimeField(default=utcnow)
    # When the current run of tries began (created, or the last manual retry):
    # the give-up clock for an unreachable destination starts here.
    since = DateTimeField(default=utcnow)
    started = DateTimeField(null=True)
    finished = DateTimeField(null=True)
    owner = CharField(max_length=64, default="")  # who asked: a user, a route, "cli"
    label = CharField(max_length=255, default="")
    payload = TextField(default="{}")  # JSON: what the job's runner needs
    runner = CharField(max_length=64, default="")  # who runs it now (recover asks if alive)

    class Meta:
        indexes = (
            (("state", "next_attempt"), False),  # claim: what is due
            (("destination", "state"), False),  # claim: how busy a destination is
        )


class QueueSent(BaseModel):
    """Instances a destination acknowledged for a job, so a resumed job skips them."""

    job = ForeignKeyField(QueueJob, on_delete="CASCADE", index=False)
    job_id: ForeignKeyField[int]
    instance_id = IntegerField()  # Instance.id; no foreign key: the instance may be purged

    class Meta:
        primary_key = CompositeKey("job", "instance_id")


QUEUE_MODELS = [QueueJob, QueueSent]


class Route(BaseModel):
    """One line of the routing table (SCU-4), made by migration 15.

    It matches images stored after it was made (``since``: the highest
    instance row id then), by calling AE and key patterns, and sends each
    matching study to every destination once the study is stable.
    """

    id: AutoField[int]
    name = CharField(max_length=64, unique=True)
    destinations = CharField(max_length=255)  # AE titles, comma-joined
    from_ae = CharField(max_length=16, default="")  # calling AE pattern; "" any
    match = TextField(default="{}")  # JSON: keyword -> pattern, all must match
    window = CharField(max_length=11, default="")  # "HH:MM-HH:MM" local; "" any time
    at = CharField(max_length=5, default="")  # "HH:MM" local: sent at that hour
    retries = IntegerField(default=3)
    commit = BooleanField(default=False)  # ask the destination for storage commitment
    purge_after = BooleanField(default=False)  # delete the local copy once delivered
    notify = BooleanField(default=False)  # send an availability notification, not the images
    enabled = BooleanField(default=True)
    since = IntegerField(default=0)
    created = DateTimeField(default=utcnow)
    owner = CharField(max_length=64, default="")


class RoutedStudy(BaseModel):
    """A study a route matched: what arrived, what jobs cover, and its jobs.

    ``upto`` is the highest instance row id of the study the route matched;
    ``queued_upto`` the highest that jobs were made for. A study is due when
    ``upto > queued_upto`` and nothing matched for StableStudySeconds: its
    jobs then send the rows in (queued_upto, upto], so images arriving in two
    associations go in one job and later ones in a follow-up, never twice.
    """

    route = ForeignKeyField(Route, on_delete="CASCADE", index=False)
    route_id: ForeignKeyField[int]
    study_uid = CharField(max_length=64)
    last_seen = DateTimeField()  # when the last matching image was received
    upto = IntegerField(default=0)
    queued_upto = IntegerField(default=0)
    jobs = TextField(default="")  # queue job ids, comma-joined, every round
    purged = BooleanField(default=False)

    class Meta:
        primary_key = CompositeKey("route", "study_uid")
        indexes = ((("study_uid",), False),)


class RouteScan(BaseModel):
    """How far the router has read the instance table (one row)."""

    id = IntegerField(primary_key=True)
    last_instance = IntegerField(default=0)


ROUTE_MODELS = [Route, RoutedStudy, RouteScan]


class AssociationLog(BaseModel):
    """Associations in and out, per remote AE, for the connectivity diagnostics.

    Made by migration 17. Accepted associations are one row each (the last
    ``AssociationLogKeep`` per AE and direction are kept); any other outcome
    is counted on one row per kind and UTC day (``count``, ``first`` to
    ``last``), so a modality retrying all night adds one row, not thousands.
    """

    id: AutoField[int]
    direction = CharField(max_length=3)  # "in" (they called us) or "out" (we called them)
    remote_ae = CharField(max_length=16)  # theirs: the calling AE (in) or the called AE (out)
    calling_ae = CharField(max_length=16, default="")  # A-ASSOCIATE-RQ Calling AE Title
    called_ae = CharField(max_length=16, default="")  # A-ASSOCIATE-RQ Called AE Title
    address = CharField(max_length=300, default="")  # their IP (in), host:port (out)
    service = CharField(max_length=16, default="")  # out: echo, store, forward, move, find
    result = CharField(max_length=16)  # assoclog.RESULTS
    reason = CharField(max_length=32, default="")  # assoclog.REASONS key, or A-ASSOCIATE-RJ codes
    detail = CharField(max_length=300, default="")  # the reason in words
    first = DateTimeField(default=utcnow)
    last = DateTimeField(default=utcnow)
    count = IntegerField(default=1)

    class Meta:
        indexes = (
            (("remote_ae", "direction", "last"), False),  # an AE's last associations
            (("last",), False),  # prune by age; rejections of the last days
        )


ASSOCLOG_MODELS = [AssociationLog]


class SyncSchedule(BaseModel):
    """Synchronisation (SCU-8): the hours at which a remote AE's studies that are not
    stored here are pulled (``db/sync.py``). Made by migration 18."""

    id: AutoField[int]
    ae_title = CharField(max_length=16, unique=True)  # the remote, from the AE table
    hours = CharField(max_length=64)  # "2,14": local hours 0-23, at most 24 of them
    days = IntegerField(default=0)  # studies of the last N days by Study Date; 0 = all
    last_slot = DateTimeField(null=True)  # the last hour a run was queued for (naive UTC)
    created = DateTimeField(default=utcnow)
    owner = CharField(max_length=64, default="")  # who set it up


SYNC_MODELS = [SyncSchedule]


class Commitment(BaseModel):
    """Storage commitment of one instance by one destination (SCU-5), one row per pair.

    Made by migration 16. A new request for the pair replaces the row. No
    foreign key to the instance: the answer outlives a purge of the local
    copy, which is what the purge guard reads.
    """

    id: AutoField[int]
    destination = CharField(max_length=16)  # the AE asked to commit
    sop_instance_uid = CharField(max_length=64)  # (0008,1155) Referenced SOP Instance UID
    sop_class_uid = CharField(max_length=64, default="")  # (0008,1150) Referenced SOP Class UID
    study_instance_uid = CharField(max_length=64, default="", index=True)  # (0020,000D)
    job_id = IntegerField(default=0)  # the commit job of the queue that asks
    transaction_uid = CharField(max_length=64, default="", index=True)  # (0008,1195)
    state = CharField(max_length=16, default="pending")  # pending, committed, failed
    reason = IntegerField(null=True)  # (0008,1197) Failure Reason of a failed instance
    answered_by = CharField(max_length=16, default="")  # the AE that sent the report
    requested = DateTimeField(default=utcnow)
    answered = DateTimeField(null=True)

    class Meta:
        indexes = ((("destination", "sop_instance_uid"), True), (("job_id", "state"), False))


COMMITMENT_MODELS = [Commitment]


class SchemaVersion(BaseModel):
    version = IntegerField(primary_key=True)
    name = CharField(max_length=128)
    applied = DateTimeField(default=utcnow)


CORE_MODELS = [Patient, Study, Series, Instance, ApplicationEntity, DirtyFolder]
