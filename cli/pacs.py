"""`gemini-cmr pacs find|pull|push`: studies on a PACS over DICOMweb (default) or DIMSE.

  gemini-cmr pacs find --server URL [--patient-id ID] [--patient-name NAME] [--date YYYYMMDD[-YYYYMMDD]]
  gemini-cmr pacs find --server URL --study UID          (the study's series; * marks the short-axis cine)
  gemini-cmr pacs pull --server URL --study UID [--series UID] --out FOLDER
  gemini-cmr pacs pull 'dicomweb://host:port/path?StudyInstanceUID=...' --out FOLDER
  gemini-cmr pacs push --server URL FILE_OR_FOLDER...     (e.g. OUT/dicom after super-resolve --dicom)

The server is http(s)://host:port/path or dicomweb(s)://host:port/path (DICOMweb service root), or
dimse://CALLED_AE@host:port (C-FIND, C-GET or with --retrieve move C-MOVE, C-STORE). Server, user and
password come from the options, else GEMINI_CMR_PACS_URL, GEMINI_CMR_PACS_USER, GEMINI_CMR_PACS_PASSWORD
(and _CA_BUNDLE, _TIMEOUT, _CALLING_AE), else the [pacs] table of ~/.config/gemini-cmr/pacs.toml
(or --pacs-config / GEMINI_CMR_PACS_CONFIG). Passwords are never printed or written to run.json; TLS
certificates are verified unless --insecure. A pull is written beside FOLDER and renamed when complete.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_server_options(p: argparse.ArgumentParser, server_help: str | None = None) -> None:
    """Where the PACS is and how to log in (pacs, super-resolve)."""
    g = p.add_argument_group("PACS server (else GEMINI_CMR_PACS_* or the config file)")
    g.add_argument("--server", default=None, metavar="URL",
                   help=server_help or "http(s)://host:port/dicom-web, dicomweb://..., or dimse://AE@host:port")
    g.add_argument("--user", default=None, help="user name (HTTP basic authentication)")
    g.add_argument("--password-file", default=None, metavar="FILE",
                   help="file holding the password (else GEMINI_CMR_PACS_PASSWORD or the config file)")
    g.add_argument("--insecure", action="store_true", help="do not verify the server's TLS certificate (test servers)")
    g.add_argument("--ca-bundle", default=None, metavar="FILE", help="CA certificates to verify the server with")
    g.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="seconds to wait for the server (default 30)")
    g.add_argument("--calling-ae", default=None, help="our AE title for DIMSE (default GEMINI_CMR)")
    g.add_argument("--retrieve", choices=("get", "move"), default=None, help="DIMSE retrieve: C-GET (default) or C-MOVE")
    g.add_argument("--move-port", type=int, default=None, help="local port that receives C-MOVE images")
    g.add_argument("--pacs-config", default=None, metavar="FILE", help="TOML file with a [pacs] table")


def server_from_args(args: argparse.Namespace, url: str | None = None, user: str | None = None,
                     password: str | None = None):
    from gemini_cmr.core.io.pacs import server_settings

    return server_settings(url=url or args.server, username=args.user or user, password_file=args.password_file,
                           insecure=args.insecure, ca_bundle=args.ca_bundle, timeout_s=args.timeout,
                           calling_ae=args.calling_ae, retrieve=args.retrieve, move_port=args.move_port,
                           config=args.pacs_config, password=password)


def register(subparsers, summary: str) -> None:
    p = subparsers.add_parser("pacs", help=summary, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="pacs_command", metavar="ACTION", required=True)
    f = sub.add_parser("find", help="search studies (or list a study's series)")
    f.add_argument("--patient-id", default="")
    f.add_argument("--patient-name", default="", help="DICOM name, wildcards allowed (e.g. 'DOE^*')")
    f.add_argument("--date", default="", help="study date YYYYMMDD or range YYYYMMDD-YYYYMMDD")
    f.add_argument("--study", default="", help="StudyInstanceUID: list its series")
    f.add_argument("--limit", type=int, default=200, help="at most this many studies (default 200)")
    f.add_argument("--json", action="store_true", help="JSON on stdout")
    add_server_options(f)
    f.set_defaults(func=run_find)
    g = sub.add_parser("pull", help="retrieve a study's short-axis cine (or a named series) into a folder")
    g.add_argument("url", nargs="?", default=None,
                   help="dicomweb://host:port/path?StudyInstanceUID=...[&SeriesInstanceUID=...] (or use --study)")
    g.add_argument("--study", default=None, help="StudyInstanceUID")
    g.add_argument("--series", default=None, help="SeriesInstanceUID (default: the study's short-axis cine)")
    g.add_argument("--out", required=True, help="new folder for the images (must not exist or be empty)")
    g.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_server_options(g)
    g.set_defaults(func=run_pull)
    s = sub.add_parser("push", help="send DICOM files (e.g. the SR series and SEGs of super-resolve --dicom)")
    s.add_argument("paths", nargs="+", help="DICOM files or folders (searched for *.dcm)")
    s.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_server_options(s)
    s.set_defaults(func=run_push)


def run_find(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from gemini_cmr.core.io import pacs

    server = server_from_args(args)
    if args.study:
        series = pacs.list_series(server, args.study)
        try:
            chosen = pacs.choose_cine_series(series, args.study, server.display).series_uid
        except pacs.PacsError:
            chosen = None
        if args.json:
            print(json.dumps([{**asdict(s), "short_axis_cine": s.series_uid == chosen} for s in series], indent=1))
            return 0
        for s in series:
            mark = "*" if s.series_uid == chosen else " "
            shape = f"{s.n_positions}x{s.n_phases}" if s.n_positions else "-"
            note = f"  ({s.problem})" if s.problem else ""
            print(f"{mark} {s.series_uid}  {s.modality or '-':3} {s.n_instances if s.n_instances is not None else '?':>5} "
                  f"images  {shape:>6}  {s.description}{note}")
        return 0
    studies = pacs.find(server, args.patient_id, args.patient_name, args.date, limit=args.limit)
    if args.json:
        print(json.dumps([asdict(s) for s in studies], indent=1))
        return 0
    for s in studies:
        print(f"{s.study_uid}  {s.patient_id or '-'}  {s.patient_name or '-'}  {s.study_date or '-'}  "
              f"{s.modalities or '-'}  {s.n_series if s.n_series is not None else '?'} series  {s.description}")
    if not studies:
        print("no studies found", file=sys.stderr)
    return 0


def run_pull(args: argparse.Namespace) -> int:
    from gemini_cmr.cli.super_resolve import StderrProgress
    from gemini_cmr.core.errors import GeminiError
    from gemini_cmr.core.io import pacs

    study, series, user, password = args.study, args.series, None, None
    url = None
    if args.url:
        url, study_q, series_q, user, password = pacs.parse_study_url(args.url)
        study, series = study or study_q, series or series_q
    if not study:
        raise GeminiError("name the study: --study UID or a URL with ?StudyInstanceUID=...")
    server = server_from_args(args, url, user, password)
    folder, chosen = pacs.pull(server, study, series, args.out, StderrProgress(not args.quiet))
    print(f"{folder}: {chosen.n_instances if chosen.n_instances is not None else 'all'} images of series "
          f"{chosen.series_uid} {chosen.description!r}")
    return 0


def run_push(args: argparse.Namespace) -> int:
    from gemini_cmr.cli.super_resolve import StderrProgress
    from gemini_cmr.core.io import pacs

    server = server_from_args(args)
    report = pacs.push(server, args.paths, StderrProgress(not args.quiet))
    print(f"{server.display}: stored {len(report.stored)} files in {len(report.series)} series")
    return 0
