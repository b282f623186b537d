"""Studies on a PACS: find, pull (retrieve) and push (store), over DICOMweb (QIDO-RS, WADO-RS, STOW-RS with
dicomweb-client) or DIMSE (C-FIND, C-GET or C-MOVE, C-STORE with pynetdicom, `core.io.pacs_dimse`).

Where the server is and who the user is (`server_settings`): options first, then the environment
(`GEMINI_CMR_PACS_URL`, `_USER`, `_PASSWORD`, `_CA_BUNDLE`, `_TIMEOUT`, `_CALLING_AE`, `_CONFIG`), then the
`[pacs]` table of a TOML file (`~/.config/gemini-cmr/pacs.toml` unless `--pacs-config` or
`GEMINI_CMR_PACS_CONFIG` names another). Server addresses:

- `http(s)://host:port/path` or `dicomweb(s)://host:port/path`: a DICOMweb service root;
- `dimse://CALLED_AE@host:port`: a DICOM node (C-GET by default, C-MOVE to a storage port with
  `retrieve = "move"`).

A study on a server is named by the same address plus `?StudyInstanceUID=...[&SeriesInstanceUID=...]`
(`parse_study_url`); with only a study, the short-axis cine series is chosen (`choose_cine_series`);
`super-resolve` also retrieves the study's long-axis cine series (`long_axis_series`, `pull(long_axis=True)`).

Credentials never appear in `repr`, messages or logs (`PacsServer.display` has no user information); TLS
certificates are verified unless `verify_tls` is False. Every failure is a `PacsError` with one line:
server unreachable, credentials refused, nothing found, a retrieve cut off, an upload rejected (naming
what the server already stored). A retrieve is written into a hidden temporary folder beside the target
and renamed when complete, so nothing half-written is left.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import tempfile
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

import numpy as np

from gemini_cmr.core.errors import Cancelled, PacsError

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
Cancel = Callable[[], bool]

#: Seconds to wait for a connection or an answer, unless the settings say otherwise.
DEFAULT_TIMEOUT_S = 30.0
#: Our application entity title for DIMSE.
DEFAULT_CALLING_AE = "GEMINI_CMR"
#: The config file read when neither an option nor GEMINI_CMR_PACS_CONFIG names one.
DEFAULT_CONFIG = Path("~/.config/gemini-cmr/pacs.toml")
ENV = {"url": "GEMINI_CMR_PACS_URL", "username": "GEMINI_CMR_PACS_USER", "password": "GEMINI_CMR_PACS_PASSWORD",
       "ca_bundle": "GEMINI_CMR_PACS_CA_BUNDLE", "timeout_s": "GEMINI_CMR_PACS_TIMEOUT",
       "calling_ae": "GEMINI_CMR_PACS_CALLING_AE", "config": "GEMINI_CMR_PACS_CONFIG"}
_CONFIG_KEYS = {"url", "username", "password", "password_file", "verify_tls", "ca_bundle", "timeout_s",
                "calling_ae", "retrieve", "move_port"}
#: Files stored per STOW-RS request (what the server answers per request says which files it kept).
STORE_BATCH = 16
_LOCALIZER_WORDS = ("localizer", "localiser", "scout", "survey", "tri-pilot", "3-plane", "3 plane")
#: Study and series attributes asked for by the queries.
STUDY_FIELDS = ("StudyInstanceUID", "PatientID", "PatientName", "StudyDate", "StudyDescription", "AccessionNumber",
                "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")
SERIES_FIELDS = ("SeriesInstanceUID", "Modality", "SeriesDescription", "SeriesNumber", "NumberOfSeriesRelatedInstances")
INSTANCE_FIELDS = ("SOPInstanceUID", "ImageType", "ImagePositionPatient", "ImageOrientationPatient")


@dataclass(frozen=True)
class PacsServer:
    """Where a PACS is and how to talk to it. `password` is kept out of `repr`; `display` is safe to print."""

    url: str  # http(s)://host:port/path (DICOMweb) or dimse://AE@host:port; never with user information
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    verify_tls: bool = True
    ca_bundle: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    calling_ae: str = DEFAULT_CALLING_AE
    retrieve: str = "get"  # DIMSE: "get" (C-GET) or "move" (C-MOVE to our storage port `move_port`)
    move_port: int | None = None

    @property
    def protocol(self) -> str:
        return "dimse" if self.url.startswith("dimse://") else "dicomweb"

    @property
    def display(self) -> str:
        return self.url

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        default = 104 if self.protocol == "dimse" else (443 if parts.scheme == "https" else 80)
        return parts.hostname or "", parts.port or default

    @property
    def called_ae(self) -> str:
        return unquote(urlsplit(self.url).username or "ANY-SCP")


@dataclass
class StudyInfo:
    study_uid: str
    patient_id: str = ""
    patient_name: str = ""
    study_date: str = ""
    description: str = ""
    accession: str = ""
    modalities: str = ""
    n_series: int | None = None
    n_instances: int | None = None


@dataclass
class SeriesInfo:
    study_uid: str
    series_uid: str
    modality: str = ""
    description: str = ""
    number: int | None = None
    n_instances: int | None = None
    n_positions: int | None = None  # slice positions, from the instances' headers (None: not known)
    n_phases: int | None = None  # images at the fullest position
    derived: bool = False
    problem: str | None = None  # why it is not a short-axis cine

    @property
    def is_cine_stack(self) -> bool:
        return self.problem is None

    @property
    def label(self) -> str:
        desc = f"'{self.description}' " if self.description else ""
        return f"{desc}({self.series_uid}, {self.n_instances if self.n_instances is not None else '?'} images)"


@dataclass
class StoreReport:
    stored: list[str]  # SOP Instance UIDs the server accepted
    series: dict[str, int]  # SeriesInstanceUID -> instances stored


# --- addresses and settings ---------------------------------------------------------------------------
_SCHEMES = {"http": "http", "https": "https", "dicomweb": "http", "dicomwebs": "https", "dimse": "dimse"}


def is_pacs_url(text: str | os.PathLike) -> bool:
    """True for a server address (`dicomweb://`, `dicomwebs://`, `dimse://`, `http(s)://`), not a path."""
    if not isinstance(text, str):
        text = os.fspath(text)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    return scheme in _SCHEMES


def split_url(text: str) -> tuple[str, str | None, str | None, dict[str, str]]:
    """(server address without user information or query, user, password, query parameters)."""
    text = str(text).strip()
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES or not parts.hostname:
        raise PacsError(f"not a server address: {_redact(text)} (use http(s)://host:port/path, dicomweb://..., "
                        "or dimse://AE@host:port)")
    try:
        port = parts.port
    except ValueError:
        raise PacsError(f"bad port in the server address {_redact(text)}") from None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host + (f":{port}" if port else "")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if scheme == "dimse":
        called = user or "ANY-SCP"
        if not port:
            raise PacsError(f"a DIMSE address needs a port: dimse://AE@host:port ({_redact(text)})")
        address = f"dimse://{quote(called)}@{netloc}"
        user = password = None
    else:
        address = urlunsplit((_SCHEMES[scheme], netloc, parts.path.rstrip("/"), "", ""))
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=False).items()}
    return address, user, password, query


def _redact(text: str) -> str:
    """The address without a password (safe for messages and logs)."""
    parts = urlsplit(str(text))
    if parts.password is None:
        return str(text)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{netloc}", parts.path, parts.query, parts.fragment))


def redact(text: str) -> str:
    return _redact(text) if is_pacs_url(text) else str(text)


def parse_study_url(text: str) -> tuple[str, str | None, str | None, str | None, str | None]:
    """`dicomweb://host:port/path?StudyInstanceUID=...&SeriesInstanceUID=...` -> (server address, study UID,
    series UID, user, password)."""
    address, user, password, query = split_url(text)
    unknown = set(query) - {"StudyInstanceUID", "SeriesInstanceUID"}
    if unknown:
        raise PacsError(f"unknown query parameter(s) {', '.join(sorted(unknown))} in {_redact(text)} "
                        "(use StudyInstanceUID and SeriesInstanceUID)")
    return address, query.get("StudyInstanceUID"), query.get("SeriesInstanceUID"), user, password


def _read_config(path: Path, explicit: bool) -> dict[str, Any]:
    path = path.expanduser()
    if not path.is_file():
        if explicit:
            raise PacsError("PACS config file not found", path)
        return {}
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PacsError(f"cannot read the PACS config file ({exc})", path) from None
    table = data.get("pacs", {})
    if not isinstance(table, dict):
        raise PacsError("the PACS config file needs a [pacs] table", path)
    unknown = set(table) - _CONFIG_KEYS
    if unknown:
        raise PacsError(f"unknown key(s) in [pacs]: {', '.join(sorted(unknown))} (known: "
                        f"{', '.join(sorted(_CONFIG_KEYS))})", path)
    if ("password" in table) and os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s holds a password and can be read by other users (chmod 600 it)", path)
    return table


def _read_password_file(path: str | Path) -> str:
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PacsError(f"cannot read the password file ({type(exc).__name__})", p) from None
    return text.rstrip("\r\n")


def server_settings(
    url: str | None = None,
    username: str | None = None,
    password_file: str | None = None,
    insecure: bool = False,
    ca_bundle: str | None = None,
    timeout_s: float | None = None,
    calling_ae: str | None = None,
    retrieve: str | None = None,
    move_port: int | None = None,
    config: str | None = None,
    env: dict[str, str] | None = None,
    password: str | None = None,
) -> PacsServer:
    """The server to talk to: options, else environment, else the config file (see the module)."""
    env = os.environ if env is None else env
    config_path = config or env.get(ENV["config"])
    table = _read_config(Path(config_path) if config_path else DEFAULT_CONFIG, explicit=bool(config_path))

    def pick(option, key):
        if option not in (None, ""):
            return option
        if env.get(ENV.get(key, "")):
            return env[ENV[key]]
        return table.get(key)

    raw_url = pick(url, "url")
    if not raw_url:
        raise PacsError(f"no PACS server given: use --server, {ENV['url']} or a [pacs] url in {DEFAULT_CONFIG}")
    address, url_user, url_password, _ = split_url(str(raw_url))
    user = username or url_user or pick(None, "username")
    secret = password if password is not None else url_password
    if secret is None and password_file:
        secret = _read_password_file(password_file)
    if secret is None and env.get(ENV["password"]):
        secret = env[ENV["password"]]
    if secret is None and table.get("password") is not None:
        secret = str(table["password"])
    if secret is None and table.get("password_file"):
        secret = _read_password_file(table["password_file"])
    verify = not insecure and table.get("verify_tls", True) is not False
    try:
        timeout = float(pick(timeout_s, "timeout_s") or DEFAULT_TIMEOUT_S)
        port = pick(move_port, "move_port")
        port = int(port) if port not in (None, "") else None
    except (TypeError, ValueError):
        raise PacsError("the PACS time-out and move port must be numbers") from None
    if not timeout > 0:
        raise PacsError("the PACS time-out must be positive")
    method = str(pick(retrieve, "retrieve") or "get").lower()
    if method not in ("get", "move"):
        raise PacsError(f"retrieve must be 'get' or 'move', not {method!r}")
    if method == "move" and not port:
        raise PacsError("C-MOVE needs a local storage port (--move-port or move_port in the config)")
    return PacsServer(url=address, username=user or None, password=secret, verify_tls=verify,
                      ca_bundle=pick(ca_bundle, "ca_bundle") or None, timeout_s=timeout,
                      calling_ae=str(pick(calling_ae, "calling_ae") or DEFAULT_CALLING_AE), retrieve=method,
                      move_port=port)


# --- choosing the short-axis cine -----------------------------------------------------------------------
def stack_shape(instances: Sequence[dict[str, Any]]) -> tuple[int | None, int | None, str | None]:
    """(slice positions, images at the fullest position, problem) from the instances' ImagePositionPatient
    and ImageOrientationPatient (None where the server did not say)."""
    rows = [(i.get("ImagePositionPatient"), i.get("ImageOrientationPatient")) for i in instances]
    rows = [(p, o) for p, o in rows if p is not None and o is not None and len(p) == 3 and len(o) == 6]
    if not rows:
        return None, None, None
    orient = np.array([o for _, o in rows], float)
    if np.abs(orient - orient[0]).max() > 1e-3:
        return None, None, "mixed orientations (not one stack)"
    normal = np.cross(orient[0][:3], orient[0][3:])
    depth = np.round(np.array([p for p, _ in rows], float) @ normal / 0.1).astype(int)
    _, counts = np.unique(depth, return_counts=True)
    return len(counts), int(counts.max()), None


def judge_series(s: SeriesInfo, instances: Sequence[dict[str, Any]] | None) -> SeriesInfo:
    """Fill `n_positions`, `n_phases`, `derived` and `problem` (None: a loadable short-axis cine stack)."""
    desc = s.description.lower()
    if s.modality and s.modality.upper() != "MR":
        s.problem = f"modality {s.modality}, not MR"
    elif any(w in desc for w in _LOCALIZER_WORDS):
        s.problem = "localizer"
    if instances:
        s.derived = any(list(i.get("ImageType") or [])[:1] == ["DERIVED"] for i in instances)
        if s.problem is None:
            s.n_positions, s.n_phases, s.problem = stack_shape(instances)
    if s.problem is None and s.n_positions is not None:
        if s.n_positions < 2:
            s.problem = "a single slice position (not a short-axis stack)"
        elif (s.n_phases or 0) < 2:
            s.problem = "one image per slice position (no cine)"
    if s.problem is None and s.n_positions is None and (s.n_instances or 0) < 4:
        s.problem = "too few images for a cine stack"
    return s


def choose_cine_series(series: Sequence[SeriesInfo], study_uid: str, where: str) -> SeriesInfo:
    """The short-axis cine of a study: acquired before derived, then most slices x phases (or images), a
    SAX-like description breaking ties; the same order as the folder loader's choice."""
    usable = [s for s in series if s.is_cine_stack]
    if not usable:
        reasons = "; ".join(f"{s.label}: {s.problem}" for s in series[:4]) or "no series"
        raise PacsError(f"no short-axis cine in study {study_uid} ({reasons})", where)

    def size(s):
        return (s.n_positions or 0) * (s.n_phases or 0) or (s.n_instances or 0)

    text = ("sax", "short", "sa_", "cine")
    return max(usable, key=lambda s: (not s.derived, size(s), any(t in s.description.lower() for t in text)))


def long_axis_series(series: Sequence[SeriesInfo], chosen: SeriesInfo) -> list[SeriesInfo]:
    """The series of a study that may be long-axis cines of its short-axis cine `chosen`: acquired (not derived)
    series with one slice position and several phases, judged from their headers (`judge_series`). The plane's
    angle, the Frame of Reference and the view are checked once they are read (`core.longaxis`)."""
    return [s for s in series if s.series_uid != chosen.series_uid and s.n_positions == 1
            and (s.n_phases or 0) >= 2 and not s.derived]


# --- clients --------------------------------------------------------------------------------------------
class PacsClient:
    """What both protocols do. Implementations raise `PacsError` (or `Cancelled`), nothing else."""

    def __init__(self, server: PacsServer):
        self.server = server

    def find_studies(self, patient_id: str = "", patient_name: str = "", study_date: str = "",
                     study_uid: str = "", limit: int = 200) -> list[StudyInfo]:
        raise NotImplementedError

    def find_series(self, study_uid: str, judge: bool = True) -> list[SeriesInfo]:
        raise NotImplementedError

    def retrieve_series(self, study_uid: str, series_uid: str, folder: Path, progress: Progress,
                        cancel: Cancel, expected: int | None) -> int:
        raise NotImplementedError

    def store(self, paths: Sequence[Path], progress: Progress, cancel: Cancel) -> StoreReport:
        raise NotImplementedError

    def instances(self, study_uid: str, series_uid: str) -> set[str]:
        """SOP Instance UIDs the server holds in a series."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def verify_stored(client: PacsClient, paths: Sequence[Path], progress: Progress) -> StoreReport:
    """Ask the server which of the sent files it holds: some servers answer a store with success for
    instances that a filter then drops. Raises `PacsError` naming what was kept when any is missing."""
    import pydicom

    from gemini_cmr.core.io.dicom_files import quiet_pydicom

    sent: dict[tuple[str, str], dict[str, Path]] = {}
    for p in paths:
        with quiet_pydicom():
            ds = pydicom.dcmread(p, stop_before_pixels=True,
                                 specific_tags=["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
        sent.setdefault((str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)), {})[str(ds.SOPInstanceUID)] = p
    kept: list[str] = []
    by_series: dict[str, int] = {}
    missing: list[Path] = []
    for (study_uid, series_uid), members in sent.items():
        held = client.instances(study_uid, series_uid)
        for uid, p in members.items():
            if uid in held:
                kept.append(uid)
                by_series[series_uid] = by_series.get(series_uid, 0) + 1
            else:
                missing.append(p)
    if missing:
        raise PacsError(_partial(f"upload rejected: the server did not keep {len(missing)} of {len(paths)} files, "
                                 f"e.g. {missing[0].name}", kept, by_series, client.server))
    progress(1.0, f"sent {len(kept)} files")
    return StoreReport(kept, by_series)


def connect(server: PacsServer) -> PacsClient:
    if server.protocol == "dimse":
        from gemini_cmr.core.io.pacs_dimse import DimseClient

        return DimseClient(server)
    return DicomWebClient(server)


def _text(ds, keyword: str) -> str:
    value = ds.get(keyword) if ds is not None else None
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def _int_or_none(ds, keyword: str) -> int | None:
    try:
        return int(ds.get(keyword))
    except (TypeError, ValueError):
        return None


def study_info(ds) -> StudyInfo:
    return StudyInfo(study_uid=_text(ds, "StudyInstanceUID"), patient_id=_text(ds, "PatientID"),
                     patient_name=_text(ds, "PatientName"), study_date=_text(ds, "StudyDate"),
                     description=_text(ds, "StudyDescription"), accession=_text(ds, "AccessionNumber"),
                     modalities=_text(ds, "ModalitiesInStudy"), n_series=_int_or_none(ds, "NumberOfStudyRelatedSeries"),
                     n_instances=_int_or_none(ds, "NumberOfStudyRelatedInstances"))


def series_info(ds, study_uid: str) -> SeriesInfo:
    return SeriesInfo(study_uid=study_uid, series_uid=_text(ds, "SeriesInstanceUID"), modality=_text(ds, "Modality"),
                      description=_text(ds, "SeriesDescription"), number=_int_or_none(ds, "SeriesNumber"),
                      n_instances=_int_or_none(ds, "NumberOfSeriesRelatedInstances"))


def instance_fields(ds) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in INSTANCE_FIELDS:
        v = ds.get(k) if ds is not None else None
        if v is None or v == "":
            continue
        try:
            out[k] = [float(x) for x in v] if k.startswith("Image") and k != "ImageType" else (
                [str(x) for x in v] if k == "ImageType" else str(v))
        except (TypeError, ValueError):
            continue
    return out


def _no_bulk_data(*args) -> bytes:
    """Query and metadata answers are read for their headers; pixel data (bulk data URIs) are not fetched."""
    return b""


def _http_error(exc: Exception, server: PacsServer, what: str) -> PacsError:
    import requests

    where = server.display
    if isinstance(exc, requests.exceptions.SSLError):
        return PacsError(f"the TLS certificate of {where} could not be verified; give the hospital's CA bundle "
                         "(--ca-bundle) or, only for a test server, turn verification off (--insecure)")
    if isinstance(exc, requests.exceptions.Timeout):
        return PacsError(f"the PACS at {where} did not answer within {server.timeout_s:g} s while {what} "
                         "(--timeout)")
    if isinstance(exc, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError):
        return PacsError(f"the connection to {where} was cut off while {what}")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return PacsError(f"cannot reach the PACS at {where} (connection failed; check the address and that "
                         "the server is running)")
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        code = exc.response.status_code
        if code in (401, 407):
            return PacsError(f"the PACS at {where} refused the credentials (HTTP {code}); check the user name "
                             "and password")
        if code == 403:
            return PacsError(f"the PACS at {where} refused access (HTTP 403) while {what}")
        if code == 404:
            return PacsError(f"not found on the PACS at {where} (HTTP 404) while {what}")
        reason = " ".join(str(exc.response.reason or "").split())[:80]
        return PacsError(f"the PACS at {where} answered HTTP {code} {reason} while {what}".rstrip())
    return PacsError(f"talking to the PACS at {where} failed while {what} ({type(exc).__name__})")


class DicomWebClient(PacsClient):
    """QIDO-RS / WADO-RS / STOW-RS through dicomweb-client, on a requests session with the settings' auth,
    TLS verification and time-outs; retries only on 429/503/504, twice."""

    def __init__(self, server: PacsServer):
        super().__init__(server)
        import requests
        from dicomweb_client.api import DICOMwebClient

        self.session = requests.Session()
        if server.username is not None:
            self.session.auth = (server.username, server.password or "")
        self.session.verify = (server.ca_bundle or True) if server.verify_tls else False
        self.client = DICOMwebClient(server.url, session=self.session,
                                     timeout=(min(server.timeout_s, 10.0), server.timeout_s))
        self.client.set_http_retry_params(retry=True, max_attempts=2, wait_exponential_multiplier=500)
        if not server.verify_tls:
            import urllib3

            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            log.warning("TLS certificate verification is off for %s", server.display)

    def _call(self, what: str, fn, *args, **kwargs):
        import requests

        try:
            return fn(*args, **kwargs)
        except (requests.exceptions.RequestException, OSError) as exc:
            raise _http_error(exc, self.server, what) from None

    def _json(self, items) -> list:
        from pydicom import Dataset

        from gemini_cmr.core.io.dicom_files import quiet_pydicom

        out = []
        with quiet_pydicom():
            for item in items or []:
                try:
                    ds = Dataset.from_json(item, bulk_data_uri_handler=_no_bulk_data)
                    out.append({k: ds.get(k) for k in (*STUDY_FIELDS, *SERIES_FIELDS, *INSTANCE_FIELDS)
                                if k in ds})
                except Exception:  # a malformed answer item: skip it rather than fail the whole query
                    log.warning("skipped a malformed query answer from %s", self.server.display)
        return out

    def find_studies(self, patient_id="", patient_name="", study_date="", study_uid="", limit=200):
        filters = {k: v for k, v in (("PatientID", patient_id), ("PatientName", patient_name),
                                     ("StudyDate", study_date), ("StudyInstanceUID", study_uid)) if v}
        found = self._call("searching for studies", self.client.search_for_studies, search_filters=filters,
                           fields=list(STUDY_FIELDS), limit=limit)
        return [study_info(ds) for ds in self._json(found)]

    def find_series(self, study_uid, judge=True):
        found = self._call(f"listing the series of study {study_uid}", self.client.search_for_series,
                           study_uid, fields=list(SERIES_FIELDS))
        series = [series_info(ds, study_uid) for ds in self._json(found)]
        if judge:
            for s in series:
                instances = None
                if not s.modality or s.modality.upper() == "MR":
                    meta = self._call(f"reading the headers of series {s.series_uid}",
                                      self.client.retrieve_series_metadata, study_uid, s.series_uid)
                    instances = [instance_fields(ds) for ds in self._json(meta)]
                    if s.n_instances is None:
                        s.n_instances = len(instances)
                judge_series(s, instances)
        return series

    def retrieve_series(self, study_uid, series_uid, folder, progress, cancel, expected):
        import requests

        n = 0
        what = f"retrieving series {series_uid}"
        try:
            for ds in self.client.iter_series(study_uid, series_uid):
                if cancel():
                    raise Cancelled("retrieve cancelled")
                _save_instance(ds, folder, n)
                n += 1
                progress(n / expected if expected else 0.5, f"retrieved {n}{f' of {expected}' if expected else ''} images")
        except (requests.exceptions.RequestException, OSError) as exc:
            if isinstance(exc, OSError) and not isinstance(exc, requests.exceptions.RequestException) \
                    and exc.filename:
                raise PacsError(f"cannot write a retrieved image ({exc.strerror})", exc.filename) from None
            cut = n > 0 or isinstance(exc, requests.exceptions.ChunkedEncodingError
                                      | requests.exceptions.ContentDecodingError)
            if cut:
                raise PacsError(f"the retrieve of series {series_uid} from {self.server.display} was cut off after "
                                f"{n}{f' of {expected}' if expected else ''} images; nothing was kept") from None
            raise _http_error(exc, self.server, what) from None
        except ValueError as exc:  # a multipart answer that ends in the middle of a part
            raise PacsError(f"the retrieve of series {series_uid} from {self.server.display} was cut off after "
                            f"{n} images (malformed answer: {' '.join(str(exc).split())[:80]}); nothing was kept") from None
        return n

    def store(self, paths, progress, cancel):
        import requests

        stored: list[str] = []
        by_series: dict[str, int] = {}
        for start in range(0, len(paths), STORE_BATCH):
            if cancel():
                raise Cancelled(_partial("upload cancelled", stored, by_series, self.server))
            batch = paths[start:start + STORE_BATCH]
            datasets = [_read_upload(p) for p in batch]
            progress(start / len(paths), f"sending {start + len(batch)} of {len(paths)} files")
            try:
                answer = self.client.store_instances(datasets)
            except (requests.exceptions.RequestException, OSError) as exc:
                err = _http_error(exc, self.server, f"storing {batch[0].name}")
                raise PacsError(_partial(f"upload rejected: {err}", stored, by_series, self.server)) from None
            except (ValueError, KeyError) as exc:
                raise PacsError(_partial(f"upload rejected ({' '.join(str(exc).split())[:80]})", stored, by_series,
                                         self.server)) from None
            failed = {item.get("ReferencedSOPInstanceUID") for item in answer.get("FailedSOPSequence", []) or []}
            accepted = {item.get("ReferencedSOPInstanceUID") for item in
                        answer.get("ReferencedSOPSequence", []) or []}
            for ds in datasets:
                uid = str(ds.SOPInstanceUID)
                if uid in accepted or (not accepted and uid not in failed):
                    stored.append(uid)
                    by_series[str(ds.SeriesInstanceUID)] = by_series.get(str(ds.SeriesInstanceUID), 0) + 1
            if failed:
                name = next(p.name for p, ds in zip(batch, datasets) if str(ds.SOPInstanceUID) in failed)
                raise PacsError(_partial(f"upload rejected: the server refused {len(failed)} file(s), e.g. {name}",
                                         stored, by_series, self.server))
        return verify_stored(self, paths, progress)

    def instances(self, study_uid, series_uid):
        found = self._call(f"checking series {series_uid}", self.client.search_for_instances, study_uid,
                           series_uid, fields=["SOPInstanceUID"])
        return {_text(ds, "SOPInstanceUID") for ds in self._json(found)}

    def close(self):
        self.session.close()


def _read_upload(path: Path):
    import pydicom

    from gemini_cmr.core.io.dicom_files import quiet_pydicom

    try:
        with quiet_pydicom():
            return pydicom.dcmread(path)
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise PacsError(f"not a DICOM file that can be sent ({type(exc).__name__})", path) from None


def _partial(head: str, stored: list[str], by_series: dict[str, int], server: PacsServer) -> str:
    if not stored:
        return f"{head}; nothing was stored on {server.display}"
    where = ", ".join(f"series {uid} ({n} images)" for uid, n in by_series.items())
    return (f"{head}; already stored on {server.display}: {where}; sending the same files again replaces them, "
            "or delete those series there")


def _save_instance(ds, folder: Path, n: int) -> Path:
    path = folder / f"IM_{n:05d}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


# --- the operations ---------------------------------------------------------------------------------------
def _noop_progress(fraction: float, message: str) -> None:
    pass


def _never() -> bool:
    return False


@contextlib.contextmanager
def client_for(server: PacsServer) -> Iterator[PacsClient]:
    client = connect(server)
    try:
        yield client
    finally:
        client.close()


def find(server: PacsServer, patient_id: str = "", patient_name: str = "", study_date: str = "",
         study_uid: str = "", limit: int = 200) -> list[StudyInfo]:
    with client_for(server) as c:
        return c.find_studies(patient_id, patient_name, study_date, study_uid, limit)


def list_series(server: PacsServer, study_uid: str) -> list[SeriesInfo]:
    with client_for(server) as c:
        series = c.find_series(study_uid)
    if not series:
        raise PacsError(f"study {study_uid} not found on {server.display}")
    return series


def pull(server: PacsServer, study_uid: str, series_uid: str | None, dest: str | Path,
         progress: Progress | None = None, cancel: Cancel | None = None,
         long_axis: bool = False) -> tuple[Path, SeriesInfo]:
    """Retrieve one series (the short-axis cine when `series_uid` is None) into the new folder `dest`:
    written into a hidden folder beside it and renamed when complete; nothing is left on failure.
    `long_axis`: also the study's long-axis cine series (`long_axis_series`), each into a subfolder
    `long-axis-<n>/`; one that cannot be retrieved is left out with a warning (logged and on `progress`)."""
    from gemini_cmr.core.io.dicom_files import quiet_pydicom

    progress = progress or _noop_progress
    cancel = cancel or _never
    dest = Path(dest).expanduser()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise PacsError("the pull folder exists and is not empty", dest)
    parent = dest.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PacsError(f"cannot create the folder ({exc.strerror})", parent) from None
    with client_for(server) as c:
        progress(0.0, f"looking for study {study_uid}")
        series = c.find_series(study_uid, judge=series_uid is None or long_axis)
        if not series:
            raise PacsError(f"study {study_uid} not found on {server.display}")
        if series_uid is None:
            chosen = choose_cine_series(series, study_uid, server.display)
        else:
            match = [s for s in series if s.series_uid == series_uid]
            if not match:
                raise PacsError(f"series {series_uid} not found in study {study_uid} on {server.display}")
            chosen = match[0]
        progress(0.02, f"retrieving {chosen.label}")
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.pull-", dir=parent))
        try:
            with quiet_pydicom():
                n = c.retrieve_series(study_uid, chosen.series_uid, tmp, progress, cancel, chosen.n_instances)
            if cancel():
                raise Cancelled("retrieve cancelled")
            if n == 0:
                raise PacsError(f"series {chosen.series_uid} of study {study_uid} has no images on {server.display}")
            if chosen.n_instances and n < chosen.n_instances:
                raise PacsError(f"the retrieve of series {chosen.series_uid} was cut off: {n} of "
                                f"{chosen.n_instances} images arrived; nothing was kept")
            if long_axis:
                _pull_long_axis(c, study_uid, long_axis_series(series, chosen), tmp, progress, cancel)
            if dest.exists():
                dest.rmdir()
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    progress(1.0, f"retrieved {n} images")
    log.info("retrieved %d images of series %s from %s", n, chosen.series_uid, server.display)
    return dest, chosen


def _pull_long_axis(c: PacsClient, study_uid: str, series: Sequence[SeriesInfo], folder: Path, progress: Progress,
                    cancel: Cancel) -> None:
    """Retrieve each long-axis series into `folder/long-axis-<n>/`; a failed one is removed and reported."""
    from gemini_cmr.core.io.dicom_files import quiet_pydicom

    for k, s in enumerate(series, 1):
        sub = folder / f"long-axis-{k}"
        sub.mkdir()
        progress(0.9, f"retrieving long-axis series {s.label}")
        try:
            with quiet_pydicom():
                n = c.retrieve_series(study_uid, s.series_uid, sub, _noop_progress, cancel, s.n_instances)
            if cancel():
                raise Cancelled("retrieve cancelled")
            if s.n_instances and n < s.n_instances:
                raise PacsError(f"the retrieve was cut off: {n} of {s.n_instances} images arrived")
        except PacsError as exc:
            shutil.rmtree(sub, ignore_errors=True)
            text = f"long-axis series {s.label} not retrieved: {exc}"
            log.warning("%s", text)
            progress(0.9, f"warning: {text}")


@contextlib.contextmanager
def pulled_study(server: PacsServer, study_uid: str | None, series_uid: str | None,
                 progress: Progress | None = None, cancel: Cancel | None = None,
                 long_axis: bool = False) -> Iterator[Path]:
    """A study's cine retrieved into a temporary folder, removed afterwards (`long_axis`: with the study's
    long-axis cine series, as `pull`)."""
    if not study_uid:
        raise PacsError(f"name the study: {server.display}?StudyInstanceUID=...[&SeriesInstanceUID=...]")
    root = Path(tempfile.mkdtemp(prefix="gemini-cmr-pacs-"))
    try:
        folder, _ = pull(server, study_uid, series_uid, root / "study", progress, cancel, long_axis)
        yield folder
    finally:
        shutil.rmtree(root, ignore_errors=True)


def dicom_files(paths: Sequence[str | Path]) -> list[Path]:
    """The files to send: files as given, folders searched recursively for `*.dcm`; in the order images
    before segmentations (a SEG references its images)."""
    files: list[Path] = []
    for p in map(Path, paths):
        p = p.expanduser()
        if p.is_dir():
            files += sorted(q for q in p.rglob("*.dcm") if q.is_file() and not q.name.startswith("."))
        elif p.is_file():
            files.append(p)
        else:
            raise PacsError("no such file or folder", p)
    if not files:
        raise PacsError(f"no DICOM files to send in {', '.join(map(str, paths))}")
    return sorted(dict.fromkeys(files), key=lambda q: (q.name.startswith("SEG"), str(q)))


def push(server: PacsServer, paths: Sequence[str | Path], progress: Progress | None = None,
         cancel: Cancel | None = None) -> StoreReport:
    """Send DICOM files (folders searched for `*.dcm`); a rejection names what the server already kept."""
    from gemini_cmr.core.io.dicom_files import quiet_pydicom

    files = dicom_files(paths)
    with client_for(server) as c, quiet_pydicom():
        report = c.store(files, progress or _noop_progress, cancel or _never)
    log.info("stored %d files on %s", len(report.stored), server.display)
    return report


def with_credentials(server: PacsServer, username: str | None, password: str | None) -> PacsServer:
    """The same server with another user name and password (the app's dialog fields)."""
    return replace(server, username=username or None, password=password if username else None)


__all__ = ["DEFAULT_CALLING_AE", "DEFAULT_CONFIG", "DEFAULT_TIMEOUT_S", "ENV", "PacsClient", "PacsServer",
           "SeriesInfo", "StoreReport", "StudyInfo", "choose_cine_series", "connect", "dicom_files", "find",
           "is_pacs_url", "judge_series", "list_series", "parse_study_url", "pull", "pulled_study", "push", "redact",
           "server_settings", "split_url", "stack_shape", "with_credentials"]
