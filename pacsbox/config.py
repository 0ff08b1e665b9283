"""The one settings table of pacsbox, and the INI file it reads.

One table (name, section, default, parser, help) drives INI parsing, the
commented default ``<AE>.ini`` and the manual, so a key cannot exist in one
place and be missing in another (a test checks the docs against it). Key
names follow the PacsOne conformance statement where it has one
(ApplicationEntityTitle, ServerPortNumber, ...); ours use the same style.

Relative paths in an INI resolve against the INI's own folder; with no INI the
embedded defaults resolve against ``./var`` so ``make run`` keeps everything
under the checkout.
"""

from __future__ import annotations

import configparser
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pacsbox.errors import ConfigError

log = logging.getLogger("pacsbox.config")

DEFAULT_AE = "PACSBOX"
ETC_DIR = Path("/etc/pacsbox")
EMBEDDED_BASE = Path("var")
# Where `make viewer` unpacks the OHIF viewer when ViewerDirectory is empty: beside
# the code, so `make run`, the tests and every data folder share one copy.
DEFAULT_VIEWER_DIR = Path(__file__).parent / "web" / "ohif"


# -- parsers: each returns the parsed value or raises ValueError(allowed) ----


def parse_ae_title(text: str) -> str:
    value = text.strip()
    if not value or len(value) > 16 or not all(32 <= ord(c) < 127 and c != "\\" for c in value):
        raise ValueError("1 to 16 printable ASCII characters, no backslash")
    return value


def _port(text: str) -> int:
    return _int_range(0, 65535)(text)


def _range(kind: type, noun: str, lo: float, hi: float) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text.strip())
        except ValueError:
            value = None
        if value is None or not lo <= value <= hi:
            raise ValueError(f"{noun} from {lo} to {hi}")
        return value

    return parse


def _int_range(lo: int, hi: int) -> Callable[[str], int]:
    return _range(int, "a whole number", lo, hi)


def _float_range(lo: float, hi: float) -> Callable[[str], float]:
    return _range(float, "a number", lo, hi)


def _choice(*choices: str) -> Callable[[str], str]:
    canon = {c.lower(): c for c in choices}

    def parse(text: str) -> str:
        value = canon.get(text.strip().lower())
        if value is None:
            raise ValueError("one of " + ", ".join(choices) + " (case insensitive)")
        return value

    return parse


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "yes", "true", "on"):
        return True
    if value in ("0", "no", "false", "off"):
        return False
    raise ValueError("yes or no")


def _text(text: str) -> str:
    return text.strip()


def _path(text: str) -> str:
    # Resolved against the base folder in Config.__init__.
    return text.strip()


_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def _uid_or_empty(text: str) -> str:
    value = text.strip()
    if value and (not _UID_RE.match(value) or len(value) > 64):
        raise ValueError("empty, or a transfer syntax UID such as 1.2.840.10008.1.2")
    return value


def _path_list(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


_ORIGIN_RE = re.compile(
    r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$"
)


def _origins(text: str) -> list[str]:
    """Web origins (scheme://host[:port]), separated by commas or spaces."""
    values = [v.rstrip("/") for v in re.split(r"[\s,]+", text.strip()) if v]
    for v in values:
        if not _ORIGIN_RE.match(v):
            raise ValueError(
                f"origins such as https://viewer.clinic.local:3000 separated by commas "
                f"(not {v!r}; no paths, no *)"
            )
    return [v.lower() for v in values]


def _host_port_or_empty(text: str) -> str:
    value = text.strip()
    host, _, port = value.rpartition(":")
    if value and (not host or not port.isdigit() or not 0 < int(port) < 65536):
        raise ValueError("empty, or HOST:PORT such as ris.clinic.local:2576")
    return value


@dataclass(frozen=True)
class Setting:
    name: str
    section: str
    default: str
    parse: Callable[[str], Any]
    help: str
    is_path: bool = False


S = Setting
SETTINGS: tuple[Setting, ...] = (
    # -- DICOM server (names from the PacsOne conformance statement) --------
    S(
        "ApplicationEntityTitle",
        "server",
        DEFAULT_AE,
        parse_ae_title,
        "AE title of this archive; the called AE title of every association must match it.",
    ),
    S(
        "ServerPortNumber",
        "server",
        "11112",
        _port,
        "TCP port of the DICOM listener (104 is the registered port; needs CAP_NET_BIND_SERVICE).",
    ),
    S(
        "BindAddress",
        "server",
        "0.0.0.0",
        _text,
        "Address the DICOM listener binds to; 0.0.0.0 means every interface.",
    ),
    S(
        "WorkerProcesses",
        "server",
        "2",
        _int_range(0, 64),
        "Processes serving DICOM on the one port (the daemon and WorkerProcesses - 1 workers, "
        "all recording through the daemon's index writer); 0 means one per CPU core.",
    ),
    S(
        "MaxAssociations",
        "server",
        "64",
        _int_range(1, 1000),
        "Simultaneous associations accepted; more are rejected as local-limit-exceeded.",
    ),
    S(
        "MaxPDULength",
        "server",
        "262144",
        _int_range(0, 2**32 - 1),
        "Maximum PDU length we receive (bytes; 0 means unlimited). Larger PDUs cut per-message cost.",
    ),
    S(
        "FastStoreReceive",
        "server",
        "yes",
        _bool,
        "Receive C-STORE requests on pynetdicom's socket directly (about twice the small-image "
        "rate); no means every message goes through pynetdicom's own decoder.",
    ),
    S(
        "AcseTimeout",
        "server",
        "30",
        _float_range(1, 3600),
        "Seconds to wait for an association request or release after the TCP connection opens.",
    ),
    S(
        "DimseTimeout",
        "server",
        "60",
        _float_range(1, 3600),
        "Seconds to wait for a DIMSE message once a command has started.",
    ),
    S(
        "NetworkTimeout",
        "server",
        "60",
        _float_range(1, 3600),
        "Seconds an idle or half-open connection is kept before it is closed.",
    ),
    S(
        "PreferredXferSyntaxRx",
        "server",
        "",
        _uid_or_empty,
        "Transfer syntax UID chosen when a storage SCU offers it; otherwise the first proposed wins.",
    ),
    S(
        "PersonNameCaseInsensitive",
        "server",
        "yes",
        _bool,
        "C-FIND, the web search and every later query match Patient Name without regard to "
        "case (PS3.4 C.2.2.2.1 allows it; workstations and users type names in any case); "
        "no matches it case-sensitively as other values.",
    ),
    # -- storage ------------------------------------------------------------
    S(
        "DataDirectory",
        "storage",
        ".",
        _path,
        "Folder for the database, status snapshot and default archive.",
        is_path=True,
    ),
    S(
        "ArchiveDirectory",
        "storage",
        "archive",
        _path,
        "Default archive folder for received images (an AE's archivedir overrides it).",
        is_path=True,
    ),
    S(
        "StorageFormat",
        "storage",
        "DicomPart10",
        _choice("DicomPart10", "Native"),
        "DicomPart10 keeps the standard file header; Native stores the data set alone.",
    ),
    S(
        "DuplicatePolicy",
        "storage",
        "replace",
        _choice("replace", "keep-first", "reject"),
        "What to do when a SOP Instance UID arrives again with different bytes.",
    ),
    S(
        "HoldingDays",
        "storage",
        "30",
        _int_range(0, 3650),
        "Days a replaced or edited file is kept in the holding area; older ones are deleted "
        "at start-up and by every watermark check (WatermarkInterval).",
    ),
    S(
        "NewStudiesPrivate",
        "storage",
        "yes",
        _bool,
        "Received patients and studies start private (PacsOne's rule); users without the "
        "View privilege see them only through the physician/institution rules.",
    ),
    S(
        "SyncWrites",
        "storage",
        "yes",
        _bool,
        "fsync every file and folder before acknowledging; turn off only for throwaway tests.",
    ),
    # -- database -----------------------------------------------------------
    S(
        "Database",
        "database",
        "pacsbox.db",
        _text,
        "SQLite file (relative to DataDirectory) or a URL such as "
        "postgresql://user@host/pacsbox for a site that outgrew one box.",
    ),
    # -- logging ------------------------------------------------------------
    S(
        "LogDirectory",
        "logging",
        "log",
        _path,
        "Folder for pacsbox.log when not running under systemd's journal.",
        is_path=True,
    ),
    S(
        "LogLevel",
        "logging",
        "info",
        _choice("debug", "info", "warning", "error"),
        "Operator log level; debug also logs patient names in queries.",
    ),
    S(
        "AssociationLogDays",
        "logging",
        "7",
        _int_range(1, 365),
        "Days the association log keeps rejected and failed associations (the AE page's "
        "Rejected associations and `pacsbox ae diagnose`).",
    ),
    S(
        "AssociationLogKeep",
        "logging",
        "20",
        _int_range(1, 1000),
        "Accepted associations the association log keeps per AE and direction (in, out).",
    ),
    # -- disk watermarks ----------------------------------------------------
    S(
        "HighWaterMark",
        "watermark",
        "90",
        _float_range(1, 100),
        "Disk use (%) of an archive folder above which the oldest studies are purged.",
    ),
    S(
        "LowWaterMark",
        "watermark",
        "80",
        _float_range(1, 100),
        "Disk use (%) a purge brings an archive folder back under.",
    ),
    S(
        "PurgeMinAgeHours",
        "watermark",
        "24",
        _int_range(0, 100000),
        "Studies received more recently than this are never purged.",
    ),
    S(
        "PurgeRequiresCommitment",
        "watermark",
        "no",
        _bool,
        "Purge a study only once some destination has committed every instance of it "
        "(storage commitment); no purges without that, though never while a commitment "
        "asked for is pending.",
    ),
    S(
        "WatermarkInterval",
        "watermark",
        "60",
        _int_range(5, 86400),
        "Seconds between disk usage checks.",
    ),
    # -- web page -----------------------------------------------------------
    S("WebAddress", "web", "127.0.0.1", _text, "Address the web page binds to."),
    S("WebPort", "web", "8080", _port, "TCP port of the web page; 0 disables it."),
    S(
        "IdleLogoutMinutes",
        "web",
        "10",
        _int_range(1, 1440),
        "Minutes of inactivity after which a web session ends.",
    ),
    S(
        "PasswordExpiryDays",
        "web",
        "60",
        _int_range(0, 3650),
        "Days after which a password must be changed; 0 never expires.",
    ),
    S(
        "SecureCookies",
        "web",
        "no",
        _bool,
        "Mark session cookies Secure (set when the page is served over HTTPS).",
    ),
    S(
        "AttachmentMaxMB",
        "web",
        "20",
        _float_range(0.001, 1024),
        "Largest file (in MB) a user may attach to a study or image note; larger "
        "uploads are refused with HTTP 413 and nothing is stored.",
    ),
    S(
        "StowMaxMB",
        "web",
        "1024",
        _float_range(0.001, 1048576),
        "Largest STOW-RS request (in MB, all its instances together) accepted at "
        "/dicom-web; a larger one is refused with HTTP 413 (before it is read when it "
        "states its length).",
    ),
    S(
        "DicomWebAnonymous",
        "web",
        "no",
        _bool,
        "Serve DICOMweb reads (GET) without a login, as an anonymous reader who sees "
        "public studies only and is journaled as anonymous; storing still needs a login.",
    ),
    S(
        "DicomWebCorsOrigins",
        "web",
        "",
        _origins,
        "Web origins (https://viewer.clinic.local:3000, comma-separated) whose pages may "
        "call /dicom-web from the browser (CORS, with Basic or an API token, never the "
        "session cookie); empty answers no cross-origin request.",
    ),
    S(
        "ViewerDirectory",
        "web",
        "",
        _path,
        "Folder of the OHIF viewer served at /viewer (filled by `make viewer`, which runs "
        "`python -m pacsbox.web.viewer_fetch`); empty means pacsbox/web/ohif beside the code.",
        is_path=True,
    ),
    # -- outbound ------------------------------------------------------------
    S(
        "ThreadPoolSize",
        "server",
        "2",
        _int_range(1, 64),
        "Jobs of the durable queue (forwards, exports, burns, edits and the other outbound "
        "work) the daemon runs at once, all destinations together.",
    ),
    S(
        "DeliveryConcurrency",
        "outbound",
        "1",
        _int_range(1, 16),
        "Jobs sent to one destination at once; a slow or dead destination holds back only "
        "its own jobs. The box's own jobs (each burner, exports, edits) run one at a time.",
    ),
    S(
        "DeliveryGiveUpHours",
        "outbound",
        "24",
        _float_range(0.01, 720),
        "Hours a job keeps retrying a destination it cannot reach (refused, rejected, no "
        "answer), with backoff capped at 5 minutes, before it is failed.",
    ),
    S(
        "QueueKeepDays",
        "outbound",
        "30",
        _float_range(0.01, 3650),
        "Days a done or cancelled job stays in the queue (and an export's ZIP on disk); "
        "failed jobs stay until they are retried or cancelled.",
    ),
    S(
        "StableStudySeconds",
        "outbound",
        "60",
        _int_range(0, 86400),
        "Seconds without a new image before a routed study is sent; images that come "
        "later go in a follow-up, so a study sent in two associations is sent once.",
    ),
    S(
        "CommitmentTimeout",
        "outbound",
        "10",
        _float_range(0.05, 1440),
        "Minutes a storage commitment request waits for the destination's report "
        "(N-EVENT-REPORT); then the request is sent again, with backoff, until "
        "DeliveryGiveUpHours.",
    ),
    S(
        "WorklistPollInterval",
        "server",  # where a PacsOne INI has it
        "10",
        _int_range(0, 1440),
        "Minutes between polls of the AEs marked as Modality Worklist SCPs in the AE table "
        "(their steps from yesterday on become the box's worklist items); 0 disables the "
        'polls, "Get worklist" still asks at once.',
    ),
    # -- HL7 v2 over MLLP (INT-1): orders into the worklist, ADT patient updates --
    S(
        "HL7PortNumber",
        "hl7",
        "2575",
        _port,
        "TCP port of the HL7 v2 MLLP listener (orders ORM^O01/OMI^O23, patient updates "
        "ADT^A01/A04/A08/A40); 0 disables it.",
    ),
    S(
        "HL7AllowedSenders",
        "hl7",
        "",
        _text,
        "Comma-separated IP addresses or MSH-3 sending applications allowed to send HL7; "
        "empty accepts every sender (HL7 v2 has no authentication: the clinic network is "
        "its boundary). Any other sender gets AR.",
    ),
    S(
        "HL7StationMap",
        "hl7",
        "",
        _text,
        "Scheduled Station AE Title of an HL7 order by its modality (OBR-24), as "
        "MODALITY=AE pairs separated by commas, e.g. CT=CT01,MR=MR01; a modality not "
        "listed leaves the station empty.",
    ),
    S(
        "HL7Charset",
        "hl7",
        "UNICODE UTF-8",
        _choice("ASCII", "8859/1", "8859/15", "UNICODE UTF-8"),
        "Character set of HL7 messages that do not name one in MSH-18 (HL7 table 0211 "
        "names: ASCII, 8859/1, 8859/15, UNICODE UTF-8).",
    ),
    S(
        "HL7StatusDestination",
        "hl7",
        "",
        _host_port_or_empty,
        "HOST:PORT of the RIS's MLLP listener that is told (ORM^O01, ORC-1 SC, ORC-5 IP) "
        "when the first images of an HL7 order's study arrive; empty sends nothing. "
        "Retried until the RIS answers AA.",
    ),
    # -- media --------------------------------------------------------------
    S(
        "AutoImport",
        "media",
        "yes",
        _bool,
        "Import CDs, DVDs and USB sticks as soon as they are inserted.",
    ),
    S(
        "WatchFolder",
        "media",
        "",
        _path,
        "Folder whose dropped DICOM files are imported; empty disables it.",
        is_path=True,
    ),
    S(
        "BurnerDevice",
        "media",
        "/dev/sr0",
        _text,
        "Optical burner for exports (a xorriso drive address such as /dev/sr0).",
    ),
    S(
        "MediaMountDirectory",
        "media",
        "/run/pacsbox/media",
        _path,
        "Where inserted media are mounted read-only while they are imported.",
        is_path=True,
    ),
    # -- front panel --------------------------------------------------------
    # -- modality worklist (issue 18) -------------------------------------------
    S(
        "WorklistKeepDays",
        "worklist",
        "30",
        _int_range(0, 36500),
        "Worklist items scheduled more than this many days ago are deleted by the daemon's "
        "hourly housekeeping (items in progress stay until their MPPS ends them); 0 keeps "
        "them forever.",
    ),
    S(
        "DisplayDriver",
        "frontpanel",
        "console",
        _choice("console", "hd44780", "ssd1306"),
        "Front panel display: console, hd44780 (I2C character LCD) or ssd1306 (I2C OLED).",
    ),
    S("DisplayI2CBus", "frontpanel", "1", _int_range(0, 255), "I2C bus of the display."),
    S("DisplayI2CAddress", "frontpanel", "0x27", _text, "I2C address of the display."),
    S("DisplayColumns", "frontpanel", "20", _int_range(8, 40), "Characters per display line."),
    S("DisplayRows", "frontpanel", "4", _int_range(1, 8), "Lines on the display."),
)
del S

# Keys of the conformance statement whose feature has not landed yet. A
# setting that does nothing is worse than none, so they are not in the table;
# an INI that still sets one (a PacsOne-style configuration) loads, with one
# warning line per key, rather than stopping the box.
NOT_YET_SUPPORTED: dict[str, str] = {
    "TLSPortNumber": "DICOM TLS, NET-10",
}

_BY_NAME = {s.name: s for s in SETTINGS}
SECTIONS = tuple(dict.fromkeys(s.section for s in SETTINGS))


class Config:
    """Parsed settings, read once at start and passed down.

    Attribute access uses the INI key (``cfg.ServerPortNumber``) so code,
    INI file and manual speak the same names.
    """

    def __init__(self, values: dict[str, Any], source: Path | None, base: Path) -> None:
        self._values = dict(values)
        self.source = source
        self.base = base
        for s in SETTINGS:
            if s.is_path and self._values[s.name]:
                self._values[s.name] = self._resolve(self._values[s.name], s.name)

    def _resolve(self, value: str, name: str) -> str:
        p = Path(value)
        if p.is_absolute():
            return str(p)
        if name == "DataDirectory":
            return str((self.base / p).resolve())
        return str((Path(self._values["DataDirectory"]) / p).resolve())

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def replace(self, **changes: Any) -> Config:
        """A copy with some values changed (paths re-resolved); for tests and CLI overrides."""
        values = dict(self._values)
        for k, v in changes.items():
            if k not in _BY_NAME:
                raise ConfigError(f"unknown setting {k}")
            values[k] = v
        return Config(values, self.source, self.base)

    # Derived locations: one place decides where things live.
    @property
    def data_dir(self) -> Path:
        return Path(self.DataDirectory)

    @property
    def archive_dir(self) -> Path:
        return Path(self.ArchiveDirectory)

    @property
    def database_url(self) -> str:
        db: str = self.Database
        if "://" in db:
            return db
        return "sqlite:///" + str((self.data_dir / db).resolve())

    @property
    def status_path(self) -> Path:
        return self.data_dir / "status.json"

    @property
    def holding_dir(self) -> Path:
        return self.data_dir / "holding"

    @property
    def viewer_dir(self) -> Path:
        return Path(self.ViewerDirectory) if self.ViewerDirectory else DEFAULT_VIEWER_DIR


def defaults() -> dict[str, Any]:
    return {s.name: s.parse(s.default) for s in SETTINGS}


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Read the configuration: ``path``, else $PACSBOX_CONFIG, else /etc/pacsbox/<AE>.ini, else ./var.

    Raises ConfigError naming the file, the key and what is allowed.
    """
    chosen = find_config_file(path)
    if chosen is None:
        return Config(defaults(), None, EMBEDDED_BASE.resolve())
    return parse_file(chosen)


def find_config_file(path: str | os.PathLike[str] | None = None) -> Path | None:
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: configuration file not found")
        return p
    env = os.environ.get("PACSBOX_CONFIG")
    if env:
        p = Path(env)
        if not p.is_file():
            raise ConfigError(f"{p}: configuration file named by PACSBOX_CONFIG not found")
        return p
    etc = ETC_DIR / f"{DEFAULT_AE}.ini"
    if etc.is_file():
        return etc
    local = EMBEDDED_BASE / f"{DEFAULT_AE}.ini"
    if local.is_file():
        return local
    return None


def parse_file(path: Path) -> Config:
    parser = configparser.ConfigParser(interpolation=None, default_section="__none__")
    # keep the statement's CamelCase keys (configparser's documented way; typeshed
    # has optionxform as a method only)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    try:
        with open(path, encoding="utf-8") as fh:
            parser.read_file(fh)
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc}") from None
    values = defaults()
    lower = {n.lower(): n for n in _BY_NAME}
    not_yet = {n.lower(): n for n in NOT_YET_SUPPORTED}
    for section in parser.sections():
        if section not in SECTIONS:
            raise ConfigError(
                f"{path}: unknown section [{section}]; allowed: " + ", ".join(SECTIONS)
            )
        for key, raw in parser.items(section):
            name = lower.get(key.lower())
            if name is None and key.lower() in not_yet:
                key = not_yet[key.lower()]
                log.warning(
                    "%s: [%s] %s is not supported yet (%s) and is ignored",
                    path,
                    section,
                    key,
                    NOT_YET_SUPPORTED[key],
                )
                continue
            if name is None:
                raise ConfigError(f"{path}: [{section}] {key}: unknown key")
            setting = _BY_NAME[name]
            if setting.section != section:
                raise ConfigError(f"{path}: {name} belongs in section [{setting.section}]")
            try:
                values[name] = setting.parse(raw)
            except ValueError as exc:
                raise ConfigError(
                    f"{path}: [{section}] {name} = {raw!r}: allowed is {exc}"
                ) from None
    if values["LowWaterMark"] >= values["HighWaterMark"]:
        raise ConfigError(f"{path}: [watermark] LowWaterMark must be below HighWaterMark")
    return Config(values, path, path.parent.resolve())


def default_ini(overrides: dict[str, str] | None = None) -> str:
    """The commented default INI, generated from the table."""
    overrides = overrides or {}
    out = [
        "# pacsbox configuration. Every key is shown with its default; uncomment to change.",
        "# Relative paths resolve against this file's folder (DataDirectory) or DataDirectory.",
        "",
    ]
    for section in SECTIONS:
        out.append(f"[{section}]")
        for s in SETTINGS:
            if s.section != section:
                continue
            out.append(f"# {s.help}")
            if s.name in overrides:
                out.append(f"{s.name} = {overrides[s.name]}")
            else:
                out.append(f"# {s.name} = {s.default}")
        out.append("")
    out.append("# Read but not supported yet (ignored, with a warning): " + _not_yet_list() + ".")
    out.append("")
    return "\n".join(out)


def _not_yet_list() -> str:
    return ", ".join(f"{k} ({why})" for k, why in NOT_YET_SUPPORTED.items())


def manual_table() -> str:
    """The settings as a Markdown table for the shipped manual."""
    rows = ["| key | section | default | meaning |", "| --- | --- | --- | --- |"]
    for s in SETTINGS:
        rows.append(f"| `{s.name}` | {s.section} | `{s.default}` | {s.help} |")
    rows += [
        "",
        "Keys of the conformance statement that are not supported yet: an INI that sets one "
        "still loads, with one warning naming the key, and the value is ignored: "
        + _not_yet_list()
        + ".",
    ]
    return "\n".join(rows)
