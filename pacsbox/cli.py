"""The ``pacsbox`` command: the contract in MISSION.md, one place that exits.

Every subcommand takes ``--config``; errors end here as one line and a
non-zero exit code (tracebacks only with ``--debug``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from pacsbox import __version__, config
from pacsbox.errors import ConfigError, NotFound, PacsboxError, UsageError

Handler = Callable[[argparse.Namespace, config.Config], int]
COMMANDS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    def wrap(fn: Handler) -> Handler:
        COMMANDS[name] = fn
        return fn

    return wrap


@contextlib.contextmanager
def _archive(cfg: config.Config) -> Iterator:
    """The archive, open for one command and closed however it ends."""
    from pacsbox.archive import Archive

    archive = Archive(cfg)
    try:
        yield archive
    finally:
        archive.close()


@contextlib.contextmanager
def _index(cfg: config.Config) -> Iterator:
    """The index alone, for commands that only read and write rows (the queue, routes):
    they start without loading the DICOM libraries the archive needs."""
    from pacsbox import db

    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    db.open_database(cfg.database_url)
    try:
        yield
    finally:
        db.close_database()


# -- serve and configuration ---------------------------------------------------


@command("serve")
def cmd_serve(args: argparse.Namespace, cfg: config.Config) -> int:
    _leave_out_downloads()
    from pacsbox import log as oplog
    from pacsbox.daemon import serve

    oplog.setup(cfg.LogDirectory, "debug" if args.debug else cfg.LogLevel)
    if args.port is not None:
        cfg = cfg.replace(ServerPortNumber=args.port)
    return serve(cfg, web_port=args.web_port)


@command("scp-worker")
def cmd_scp_worker(args: argparse.Namespace, cfg: config.Config) -> int:
    # pydicom loads numpy and the pixel decoders whenever they are installed:
    # 14 MB in every process. A worker only moves bytes; the daemon
    # decompresses for it when a peer takes only uncompressed images.
    sys.modules.setdefault("numpy", None)  # type: ignore[arg-type]  # None: blocks the import
    _leave_out_downloads()
    from pacsbox import log as oplog
    from pacsbox.workers import run_worker

    # Workers log to standard error only: the daemon's file (or the journal)
    # gets one writer, and systemd collects the workers' lines from stderr.
    oplog.setup(None, "debug" if args.debug else cfg.LogLevel)
    return run_worker(cfg, args.index, args.listen_fd, args.processes, args.record_fd)


@command("default-config")
def cmd_default_config(args: argparse.Namespace, cfg: config.Config) -> int:
    text = config.default_ini({"DataDirectory": "."} if args.out else {})
    if args.out:
        out = Path(args.out)
        if out.exists() and not args.force:
            raise UsageError(f"{out} exists (use --force to overwrite)")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        print(f"wrote {out}")
    else:
        sys.stdout.write(text)
    return 0


# -- the AE table ------------------------------------------------------------------


@command("ae")
def cmd_ae(args: argparse.Namespace, cfg: config.Config) -> int:
    from pacsbox.db import aes as db_aes

    with _archive(cfg):  # opens and migrates the index
        if args.ae_cmd == "add":
            try:
                title = config.parse_ae_title(args.title)  # same rule as our own AE title
            except ValueError as exc:
                raise UsageError(f"AE title {args.title!r}: {exc}") from None
            fields = {"hostname": args.host or "", "port": args.port}
            if args.ip is not None:
                fields["ipaddr"] = args.ip
            if args.allow is not None:
                fields["allowaccess"] = args.allow
            if args.archivedir is not None:
                fields["archivedir"] = (
                    str(Path(args.archivedir).resolve()) if args.archivedir else ""
                )
            if args.description is not None:
                fields["description"] = args.description
            if args.worklist is not None:
                fields["worklist"] = args.worklist
            db_aes.ae_upsert(title, **fields)
            print(f"AE {title} saved")
        elif args.ae_cmd == "list":
            rows = db_aes.ae_list()
            print(f"{'TITLE':16} {'HOST':20} {'IP':15} {'PORT':>5} {'ACCESS':6} {'MWL':3} "
                  "ARCHIVEDIR")  # fmt: skip
            for ae in rows:
                print(
                    f"{ae.title:16} {ae.hostname:20} {ae.ipaddr:15} {ae.port or '':>5} "
                    f"{'allow' if ae.allowaccess else 'deny':6} {'yes' if ae.worklist else '-':3} "
                    f"{ae.archivedir}"
                )
        elif args.ae_cmd == "remove":
            if not db_aes.ae_remove(args.title):
                raise NotFound(f"AE {args.title} is not in the AE table")
            print(f"AE {args.title} removed")
        elif args.ae_cmd == "diagnose":
            from pacsbox.scu.diagnose import diagnose

            return diagnose(cfg, args.title, sys.stdout)
        return 0


# -- consistency -------------------------------------------------------------------


@command("rebuild-index")
def cmd_rebuild(args: argparse.Namespace, cfg: config.Config) -> int:
    from pacsbox import recovery
    from pacsbox.progress import Bar

    with _archive(cfg):  # opens and migrates the index
        report = recovery.rebuild(cfg, progress=Bar("rebuild"))
        print("index rebuilt: " + report.summary())
        return 0


@command("check")
def cmd_check(args: argparse.Namespace, cfg: config.Config) -> int:
    from pacsbox import recovery
    from pacsbox.progress import Bar

    with _archive(cfg):
        report = recovery.full_check(cfg, repair=False, progress=Bar("check"))
        print("check: " + report.summary().replace(" indexed", " not indexed"))
        for sop in report.missing_files:
            print(f"missing file for SOP Instance {sop}")
        for path in report.unreadable:
            print(f"unreadable: {path}")
        clean = not (report.indexed or report.missing_files or report.unreadable or report.held)
        return 0 if clean else 1


# -- media: import, export and burn ------------------------------------------------------


@command("import")
def cmd_import(args: argparse.Namespace, cfg: config.Config) -> int:
    from functools import partial

    from pacsbox.errors import MediaError
    from pacsbox.media.importer import run_import
    from pacsbox.progress import Bar

    if bool(args.path) == bool(args.device):
        raise UsageError("give a PATH to import, or --device DEV")
    bar = Bar("import")
    with _archive(cfg) as archive:
        store = partial(archive.store, source="import")
        if args.device:
            from pacsbox.media.autoimport import import_device

            report = import_device(args.device, cfg, store, progress=lambda p: bar(p.done, p.total))
        else:
            path = Path(args.path)
            if not path.exists():
                raise NotFound(f"{path}: no such file or folder")
            report = run_import(path, store, progress=lambda p: bar(p.done, p.total))
    for line in report.lines():
        print(line)
    if getattr(report, "aborted", None):
        raise MediaError(report.aborted)
    return 0 if report.ok else 1


# -- media: export and burn ------------------------------------------------------------


@command("export")
def cmd_export(args: argparse.Namespace, cfg: config.Config) -> int:
    from pacsbox.export.selection import export_selection
    from pacsbox.progress import Bar

    if not (args.patient or args.study or args.series):
        raise UsageError("choose what to export with --patient, --study or --series")
    with _archive(cfg) as archive:
        volumes = export_selection(
            archive,
            Path(args.out),
            patients=args.patient,
            studies=args.study,
            series=args.series,
            media=args.media,
            zip_volumes=args.zip,
            label=args.label,
            viewer_dir=Path(args.viewer) if args.viewer else None,
            progress=Bar("export"),
        )
        for v in volumes:
            extra = f", deviations: {'; '.join(v.deviations)}" if v.deviations else ""
            zipped = f", zip {v.zip_path}" if v.zip_path else ""
            print(
                f"volume {v.number} {v.label}: {v.instances} instances, {v.bytes} bytes, "
                f"{v.profile}, {v.directory}{zipped}{extra}"
            )
        return 0


@command("burn")
def cmd_burn(args: argparse.Namespace, cfg: config.Config) -> int:
    from pacsbox.export import burn_path
    from pacsbox.progress import Bar

    res = burn_path(Path(args.path), args.device or cfg.BurnerDevice, progress=Bar("burn"))
    print(
        f"burned {res.volume_id} to {res.device}: {res.bytes_written} bytes, "
        f"{res.files_verified} files verified in {res.seconds:.1f} s"
    )
    return 0


# -- status and front panel ----------------------------------------------------------


@command("status")
def cmd_status(args: argparse.Namespace, cfg: config.Config) -> int:
    import json

    from pacsbox import status

    snap = status.current(cfg)
    if args.json:
        print(json.dumps(snap, indent=1))
    else:
        sys.stdout.write(status.format_text(snap))
    return status.exit_code(snap)


@command("frontpanel")
def cmd_frontpanel(args: argparse.Namespace, cfg: config.Config) -> int:
    from pacsbox import frontpanel
    from pacsbox import log as oplog

    oplog.setup(None, cfg.LogLevel)
    frontpanel.run(cfg, once=args.once)
    return 0


@command("user")
def cmd_user(args: argparse.Namespace, cfg: config.Config) -> int:
    import getpass
    import time

    from pacsbox import setupcode
    from pacsbox.web import tokens, users

    with _archive(cfg):  # opens and migrates the index
        if args.user_cmd == "add":
            pw = users.add_user(
                args.name,
                args.privilege or [],
                first_name=args.first_name or "",
                last_name=args.last_name or "",
                group=args.group,
                wado_only=args.wado,
            )
            print(f"user {args.name} created; one-time password: {pw}")
        elif args.user_cmd == "passwd":
            pw = None
            if not args.generate:
                if sys.stdin.isatty():
                    pw = getpass.getpass("new password: ")
                    if getpass.getpass("again: ") != pw:
                        raise UsageError("the passwords differ")
                else:
                    pw = sys.stdin.readline().rstrip("\n")
            out = users.set_password(args.name, pw)
            if args.name == "root":  # the front panel's setup code no longer works
                setupcode.discard(setupcode.path(cfg.data_dir))
            print(
                f"one-time password for {args.name}: {out}"
                if pw is None
                else f"password of {args.name} changed"
            )
        elif args.user_cmd == "list":
            for u in users.list_users():
                print(
                    f"{u['name']:16} {u['first_name']} {u['last_name']:20} {u['group']:12} "
                    f"{','.join(u['privileges'])}"
                )
        elif args.user_cmd == "token":
            # The value alone on standard output (a script keeps it); shown only now.
            print(tokens.create(args.name, args.label or "", args.days))
        elif args.user_cmd == "tokens":
            for t in users.token_rows(args.name, time.time()):
                print(f"{t['id']:<5} {t['state']:8} {t['label'] or '-':20} created "
                      f"{t['created_at']}, last used {t['last_used_at']}, "
                      f"expires {t['expires_at']}")  # fmt: skip
        elif args.user_cmd == "revoke-token":
            tokens.revoke(args.name, args.id)
            print(f"API token {args.id} of {args.name} revoked")
        return 0


@command("selfcheck")
def cmd_selfcheck(args: argparse.Namespace, cfg: config.Config) -> int:
    from pacsbox import scu, selfcheck

    # The box calls itself with its own AE title from loopback, which the
    # listener accepts without an AE-table entry.
    peer = scu.Peer(cfg.ApplicationEntityTitle, "127.0.0.1", cfg.ServerPortNumber)
    return selfcheck.run(cfg, lambda: scu.echo(cfg.ApplicationEntityTitle, peer, timeout=5).ok)


@command("purge")
def cmd_purge(args: argparse.Namespace, cfg: config.Config) -> int:
    from pacsbox.watermark.command import purge_command

    return purge_command(cfg, args.dry_run, sys.stdout)


# -- outbound: forward and the queue ----------------------------------------------------


@command("forward")
def cmd_forward(args: argparse.Namespace, cfg: config.Config) -> int:
    import getpass

    from pacsbox.outbound import control_client

    # A running daemon takes it over its control socket: no index opened here.
    code = control_client.request(cfg.data_dir, {
        "op": "forward", "patients": args.patient, "studies": args.study, "series": args.series,
        "instances": args.image, "to": args.to, "wait": args.wait, "commit": args.commit,
    })  # fmt: skip
    if code is not None:
        return code
    from pacsbox.outbound import forward
    from pacsbox.outbound.commands import forward_command

    selection = forward.Selection(args.patient, args.study, args.series, args.image)
    with _index(cfg):
        return forward_command(
            cfg, selection, args.to, args.wait, f"cli:{getpass.getuser()}", sys.stdout,
            commit=args.commit,
        )  # fmt: skip


@command("print")
def cmd_print(args: argparse.Namespace, cfg: config.Config) -> int:
    import getpass

    from pacsbox.outbound import printing
    from pacsbox.outbound.commands import poke_daemon, wait_for

    with _index(cfg):
        job_id = printing.submit(
            args.printer, studies=args.study, series=args.series, instances=args.image,
            layout=args.layout, film_size=args.film_size, orientation=args.orientation,
            copies=args.copies, owner=f"cli:{getpass.getuser()}",
        )  # fmt: skip
        print(f"job {job_id}: print to {args.printer} queued")
        poke_daemon(cfg)
        if args.wait:
            wait_for(cfg, job_id, sys.stdout)
    return 0


@command("queue")
def cmd_queue(args: argparse.Namespace, cfg: config.Config) -> int:
    from pacsbox.outbound.commands import queue_command

    with _index(cfg):
        return queue_command(cfg, args.action or "list", args.id, args.json, sys.stdout)


@command("route")
def cmd_route(args: argparse.Namespace, cfg: config.Config) -> int:
    import getpass

    from pacsbox.db import routes
    from pacsbox.outbound.route_commands import route_command

    view = None
    if args.action == "add":
        view = routes.RouteView(
            name=args.name, destinations=args.to, from_ae=args.from_ae or "",
            match=routes.parse_match(args.match), window=args.window or "", at=args.at or "",
            retries=args.retries, commit=args.commit, purge_after=args.purge_after,
            notify=args.notify,
        )  # fmt: skip
    with _index(cfg):
        return route_command(
            args.action, view, getattr(args, "name", ""), getattr(args, "json", False),
            f"cli:{getpass.getuser()}", sys.stdout,
        )  # fmt: skip


# -- remote query and retrieve ------------------------------------------------------


@command("query")
def cmd_query(args: argparse.Namespace, cfg: config.Config) -> int:
    from pacsbox.outbound.remotecmd import query_command

    _quiet_pynetdicom(args)
    with _archive(cfg):
        return query_command(cfg, args.ae, args.level, args.k, args.json, sys.stdout)


@command("retrieve")
def cmd_retrieve(args: argparse.Namespace, cfg: config.Config) -> int:
    import getpass

    from pacsbox.outbound.remotecmd import retrieve_command

    _quiet_pynetdicom(args)
    with _archive(cfg):
        return retrieve_command(cfg, args.ae, args.study, args.series or "", args.wait,
                                f"cli:{getpass.getuser()}", sys.stdout)  # fmt: skip


@command("sync")
def cmd_sync(args: argparse.Namespace, cfg: config.Config) -> int:
    import getpass

    from pacsbox.outbound.remotecmd import sync_command

    _quiet_pynetdicom(args)
    with _archive(cfg):
        return sync_command(cfg, args.sync_cmd, getattr(args, "ae", None),
                            getattr(args, "hours", None), getattr(args, "days", None),
                            getattr(args, "wait", False), f"cli:{getpass.getuser()}",
                            sys.stdout)  # fmt: skip


# -- the modality worklist (issue 18) ----------------------------------------------


@command("worklist")
def cmd_worklist(args: argparse.Namespace, cfg: config.Config) -> int:
    import getpass
    import json

    from pacsbox.db import journal, worklist
    from pacsbox.db.worklist_query import full_time

    owner = f"cli:{getpass.getuser()}"
    with _index(cfg):
        if args.worklist_cmd == "add":
            values = {
                "patient_id": args.patient_id, "patient_name": args.patient_name,
                "accession_number": args.accession, "modality": args.modality,
                "station_ae": args.station_ae, "start_date": args.date,
                "start_time": full_time(args.time or ""), "birth_date": args.birth_date or "",
                "sex": args.sex or "", "requested_procedure_description": args.procedure or "",
                "sps_description": args.procedure or "",
            }  # fmt: skip
            item_id = worklist.add(values, source="cli")
            journal.record("worklist-add", owner, target=str(item_id),
                           detail=f"{args.modality} on {args.station_ae} {args.date}")  # fmt: skip
            print(item_id)
        elif args.worklist_cmd == "list":
            rows = [worklist.summary(item) for item in worklist.items()]
            if args.json:
                print(json.dumps(rows, indent=1))
                return 0
            print(f"{'ID':>6} {'START':16} {'MODALITY':8} {'STATION':16} {'STATUS':12} "
                  f"{'ACCESSION':16} PATIENT")  # fmt: skip
            for r in rows:
                print(f"{r['id']:>6} {r['start']:16} {r['modality']:8} {r['station_ae']:16} "
                      f"{r['status']:12} {r['accession']:16} {r['patient_id']} "
                      f"{r['patient_name']}")  # fmt: skip
        elif args.worklist_cmd == "poll":
            return _worklist_poll(cfg, args.ae, args.wait, owner)
        else:
            worklist.remove(args.id)
            journal.record("worklist-remove", owner, target=str(args.id))
            print(f"worklist item {args.id} removed")
    return 0


def _worklist_poll(cfg: config.Config, title: str | None, wait: bool, owner: str) -> int:
    """Queue a poll of one worklist SCP, or of every one the AE table marks; with
    ``wait`` follow each to its end."""
    from pacsbox.outbound import worklist_poll
    from pacsbox.outbound.commands import poke_daemon, wait_for

    ids = (
        [worklist_poll.submit(title, owner=owner)]
        if title
        else worklist_poll.queue_all(owner=owner)
    )
    if not ids:
        raise UsageError("no AE of the AE table is marked as a worklist SCP (ae add --worklist)")
    for job_id in ids:
        print(f"job {job_id}: worklist poll queued")
    poke_daemon(cfg)
    if wait:
        for job_id in ids:
            wait_for(cfg, job_id, sys.stdout)
    return 0


def _worklist_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """``worklist add|list|remove``: the items modalities get by Modality Worklist C-FIND."""
    s = sub.add_parser("worklist", parents=[common], help="the modality worklist (scheduled steps)")
    wsub = s.add_subparsers(dest="worklist_cmd", required=True, metavar="ACTION")
    a = wsub.add_parser("add", parents=[common], help="schedule a procedure step; prints its id")
    a.add_argument("--patient-id", required=True, metavar="ID")
    a.add_argument("--patient-name", required=True, metavar="NAME", help="DICOM form: LAST^FIRST")
    a.add_argument("--accession", required=True, metavar="A", help="the accession number")
    a.add_argument("--modality", required=True, metavar="M", help="CT, MR, US...")
    a.add_argument("--station-ae", required=True, metavar="AE", help="the modality's AE title")
    a.add_argument("--date", required=True, metavar="YYYYMMDD", help="the scheduled date")
    a.add_argument("--time", metavar="HHMM", help="the scheduled time")
    a.add_argument("--procedure", metavar="TEXT",
                   help="requested procedure and scheduled step description")  # fmt: skip
    a.add_argument("--birth-date", metavar="D", help="the patient's birth date YYYYMMDD")
    a.add_argument("--sex", metavar="S", help="M, F or O")
    lst = wsub.add_parser("list", parents=[common], help="list the items by scheduled time")
    lst.add_argument("--json", action="store_true", help="a JSON array of the items")
    r = wsub.add_parser("remove", parents=[common], help="delete an item")
    r.add_argument("id", type=int, metavar="ID")
    p = wsub.add_parser("poll", parents=[common],
                        help="ask the worklist SCPs of the AE table for their steps now")  # fmt: skip
    p.add_argument("ae", nargs="?", help="only this AE (default: every one marked --worklist)")
    p.add_argument("--wait", action="store_true", help="follow the poll jobs to their end")


def _quiet_pynetdicom(args: argparse.Namespace) -> None:
    """pynetdicom logs a failed association in several lines; the command says it in one."""
    if not args.debug:
        logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)


def _days(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("a whole number of days, 1 or more")
    return int(text)


def _sync_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """``sync add|list|remove|run`` (SCU-8)."""
    s = sub.add_parser(
        "sync", parents=[common], help="pull a remote AE's studies not stored here, by the hour"
    )
    ssub = s.add_subparsers(dest="sync_cmd", required=True, metavar="ACTION")
    a = ssub.add_parser("add", parents=[common], help="set (or replace) an AE's schedule")
    a.add_argument("ae", metavar="AE", help="the remote AE, from the AE table")
    a.add_argument("--hours", required=True, metavar="H[,H...]",
                   help="local hours 0-23 to run at (up to 24), e.g. 2,14")  # fmt: skip
    a.add_argument("--days", type=_days, metavar="N",
                   help="only studies of the last N days (by Study Date); default every study")  # fmt: skip
    ssub.add_parser("list", parents=[common], help="list the schedules")
    r = ssub.add_parser("remove", parents=[common], help="remove an AE's schedule")
    r.add_argument("ae", metavar="AE")
    r = ssub.add_parser("run", parents=[common], help="queue a sync run of an AE now")
    r.add_argument("ae", metavar="AE")
    r.add_argument("--days", type=_days, metavar="N", help="override the schedule's days")
    r.add_argument("--wait", action="store_true", help="follow the sync job until it ends")


def _remote_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """``query`` and ``retrieve`` (SCU-2), named as in MISSION.md."""
    s = sub.add_parser("query", parents=[common], help="C-FIND a remote AE of the AE table")
    s.add_argument("ae", metavar="AE", help="the remote AE, from the AE table")
    s.add_argument(
        "--level",
        choices=["patient", "study", "series"],
        default="study",
        help="what to list (default study; series needs -k StudyInstanceUID=...)",
    )
    s.add_argument(
        "-k",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a matching or return key by keyword or tag, with wildcards * ? "
        "and date ranges (StudyDate=20240101-20241231); repeat for more",
    )
    s.add_argument(
        "--json",
        action="store_true",
        help="a JSON array of matches keyed by DICOM keyword, with a local field",
    )
    s = sub.add_parser(
        "retrieve",
        parents=[common],
        help="C-MOVE a study or series from a remote AE to this box (a queue job; prints its id)",
    )
    s.add_argument("ae", metavar="AE", help="the remote AE, from the AE table")
    s.add_argument("--study", required=True, metavar="UID", help="the Study Instance UID")
    s.add_argument("--series", metavar="UID", help="only this Series Instance UID of the study")
    s.add_argument(
        "--wait",
        action="store_true",
        help="show progress until the job ends; exit 1 with the reason when it fails",
    )
    _sync_parser(sub, common)


# -- argument parsing --------------------------------------------------------------


def _bool_flag(p: argparse.ArgumentParser, name: str, help_on: str, help_off: str) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument(f"--{name}", dest=name, action="store_true", default=None, help=help_on)
    g.add_argument(f"--no-{name}", dest=name, action="store_false", help=help_off)


def _common_options(*, in_subcommand: bool) -> argparse.ArgumentParser:
    """``--config`` and ``--debug``, taken before or after any subcommand name.

    argparse copies every attribute of a subcommand's namespace over the main
    one, defaults included; the subcommands' copies therefore have no default
    (SUPPRESS), so an option given earlier in the line is never reset.
    """
    unset: dict = {"default": argparse.SUPPRESS} if in_subcommand else {}
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="FILE",
        help="the instance's INI file, before or after the command "
        "(default: $PACSBOX_CONFIG, else /etc/pacsbox/PACSBOX.ini, else ./var/PACSBOX.ini)",
        **unset,
    )
    common.add_argument("--debug", action="store_true", help="tracebacks and debug logs", **unset)
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options(in_subcommand=True)
    p = argparse.ArgumentParser(
        prog="pacsbox",
        parents=[_common_options(in_subcommand=False)],
        description="pacsbox: a DICOM archive appliance (PACS in one box). Every command "
        "takes --config FILE and --debug, before or after its name; on error it exits "
        "non-zero with a one-line reason.",
    )
    p.add_argument("--version", action="version", version=f"pacsbox {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", parents=[common], help="run the daemon in the foreground")
    s.add_argument("--port", type=int, help="override ServerPortNumber (0 picks a free port)")
    s.add_argument("--web-port", type=int, help="override WebPort (0 picks a free port)")

    s = sub.add_parser(
        "scp-worker", parents=[common], help="(internal) a DICOM worker process started by serve"
    )
    s.add_argument("--index", type=int, required=True)
    s.add_argument("--listen-fd", type=int, required=True)
    s.add_argument("--processes", type=int, required=True)
    s.add_argument("--record-fd", type=int, required=True)
    s = sub.add_parser(
        "default-config", parents=[common], help="print (or write) the commented default INI"
    )
    s.add_argument("--out", help="write to this file instead of standard output")
    s.add_argument("--force", action="store_true", help="overwrite an existing file")

    s = sub.add_parser("ae", parents=[common], help="manage the AE table")
    aesub = s.add_subparsers(dest="ae_cmd", required=True, metavar="ACTION")
    a = aesub.add_parser("add", parents=[common], help="add or update an AE")
    a.add_argument("title")
    a.add_argument("--host", help="host name or address the AE is reached at")
    a.add_argument("--port", type=int, help="its DICOM port (for C-MOVE, forwarding, Ping)")
    a.add_argument("--ip", help="only accept this AE from this IP address")
    allow = a.add_mutually_exclusive_group()
    allow.add_argument(
        "--allow",
        dest="allow",
        action="store_true",
        default=None,
        help="allow it to associate (default for a new AE)",
    )
    allow.add_argument("--deny", dest="allow", action="store_false", help="refuse its associations")
    a.add_argument("--archivedir", help="store what this AE sends under this folder")
    a.add_argument("--description", help="free text")
    _bool_flag(a, "worklist", "a Modality Worklist SCP the box polls (WorklistPollInterval)",
               "not a worklist SCP (the default)")  # fmt: skip
    aesub.add_parser("list", parents=[common], help="list the AE table")
    r = aesub.add_parser("remove", parents=[common], help="remove an AE")
    r.add_argument("title")
    r = aesub.add_parser(
        "diagnose",
        parents=[common],
        help="its last associations in and out, recent rejections with the fix, and "
        "C-ECHO both ways (exit 0 when every direction that can be tested works)",
    )
    r.add_argument("title")

    sub.add_parser(
        "rebuild-index", parents=[common], help="rebuild the whole index from the archived files"
    )
    sub.add_parser(
        "check",
        parents=[common],
        help="compare files and index, change nothing (exit 1 on differences)",
    )
    s = sub.add_parser("user", parents=[common], help="manage web users (root manages all)")
    usub = s.add_subparsers(dest="user_cmd", required=True, metavar="ACTION")
    u = usub.add_parser("add", parents=[common], help="add a user; prints a one-time password")
    u.add_argument("name")
    u.add_argument(
        "--privilege",
        action="append",
        metavar="P",
        help="a privilege (view, modify, forward, query, move, download, export, "
        "import, print, upload, monitor, mark, storage, admin); repeat for more. "
        "print, upload and storage gate no feature yet",
    )
    u.add_argument("--first-name")
    u.add_argument("--last-name")
    u.add_argument("--group")
    u.add_argument("--wado", action="store_true", help="the dedicated WADO-only account")
    u = usub.add_parser(
        "passwd", parents=[common], help="set a password (read from the terminal or standard input)"
    )
    u.add_argument("name")
    u.add_argument("--generate", action="store_true", help="make a one-time password instead")
    usub.add_parser("list", parents=[common], help="list users")
    u = usub.add_parser(
        "token", parents=[common], help="make an API token (Bearer) for a user; prints it once"
    )
    u.add_argument("name")
    u.add_argument("--label", help="what the token is for (shown in lists and the journal)")
    u.add_argument("--days", type=float, default=0, help="days valid; 0 (default): until revoked")
    u = usub.add_parser(
        "tokens", parents=[common], help="list a user's API tokens (not their values)"
    )
    u.add_argument("name")
    u = usub.add_parser("revoke-token", parents=[common], help="revoke one API token of a user")
    u.add_argument("name")
    u.add_argument("id", type=int, help="the token's number, as `pacsbox user tokens` lists it")
    sub.add_parser(
        "selfcheck",
        parents=[common],
        help="succeed only when no systemd unit failed and pacsbox answers C-ECHO",
    )
    s = sub.add_parser(
        "purge",
        parents=[common],
        help="purge the oldest studies of disks above the high-water mark",
    )
    s.add_argument(
        "--dry-run",
        action="store_true",
        help="only list what would be purged and why (and why others are kept)",
    )
    s = sub.add_parser(
        "import",
        parents=[common],
        help="import a folder, mounted medium, DICOMDIR or ZIP (or --device)",
    )
    s.add_argument("path", nargs="?", help="folder, medium, DICOMDIR file or ZIP")
    s.add_argument(
        "--device",
        help="a block device to mount read-only, import and eject "
        "(what the udev-started unit runs)",
    )
    s = sub.add_parser(
        "export", parents=[common], help="export patients/studies/series as DICOMDIR volumes"
    )
    s.add_argument("--patient", action="append", default=[], metavar="ID", help="a Patient ID")
    s.add_argument(
        "--study", action="append", default=[], metavar="UID", help="a Study Instance UID"
    )
    s.add_argument(
        "--series", action="append", default=[], metavar="UID", help="a Series Instance UID"
    )
    s.add_argument("--out", required=True, help="folder for the volumes (created, must be empty)")
    s.add_argument(
        "--media",
        choices=["cd", "dvd", "dvd-dl"],
        default="cd",
        help="volume size: CD 650 MB, DVD 4.7 GB, DVD-DL 8.5 GB",
    )
    s.add_argument("--zip", action="store_true", help="also a ZIP per volume")
    s.add_argument("--label", default="PACSBOX", help="File-set ID / disc label")
    s.add_argument("--viewer", help="folder copied onto every volume as VIEWER")
    s = sub.add_parser(
        "burn", parents=[common], help="burn an exported volume folder or an ISO, then verify it"
    )
    s.add_argument("path", help="a volume folder (an ISO is built) or an ISO image")
    s.add_argument("--device", help="burner (default: BurnerDevice); stdio:FILE writes a file")
    s = sub.add_parser(
        "status",
        parents=[common],
        help="what the front panel shows (exit 0 ok, 1 problem, 3 not running)",
    )
    s.add_argument("--json", action="store_true", help="the raw status snapshot")
    s = sub.add_parser(
        "forward",
        parents=[common],
        help="send patients, studies, series or images to an AE (a queue job; prints its id)",
    )
    for flag, what in (("patient", "Patient ID"), ("study", "Study Instance UID"),
                       ("series", "Series Instance UID"), ("image", "SOP Instance UID")):  # fmt: skip
        s.add_argument(f"--{flag}", action="append", default=[], metavar=what.split()[-1],
                       help=f"a {what} to send (repeat for more)")  # fmt: skip
    s.add_argument("--to", required=True, metavar="AE", help="destination, from the AE table")
    s.add_argument(
        "--commit",
        action="store_true",
        help="once delivered, ask the destination to commit the images (Storage Commitment); "
        "with --wait, exit 1 unless every image was committed",
    )
    s.add_argument(
        "--wait",
        action="store_true",
        help="show progress until the job ends; exit 1 with the reason when it fails "
        "(runs the job here when no daemon is running)",
    )
    s = sub.add_parser(
        "print",
        parents=[common],
        help="print a series, a study or images on a DICOM printer (a queue job; prints its id)",
    )
    s.add_argument("printer", metavar="AE", help="the printer, from the AE table")
    for flag, what in (("study", "Study Instance UID"), ("series", "Series Instance UID"),
                       ("image", "SOP Instance UID")):  # fmt: skip
        s.add_argument(f"--{flag}", action="append", default=[], metavar="UID",
                       help=f"a {what} to print (repeat for more)")  # fmt: skip
    s.add_argument("--layout", default="1x1",
                   help="images across x down per film (2x2) or STANDARD\\C,R (default 1x1)")  # fmt: skip
    s.add_argument("--film-size", default="14INX17IN", help="Film Size ID (default 14INX17IN)")
    s.add_argument("--orientation", default="PORTRAIT", choices=["PORTRAIT", "LANDSCAPE"])
    s.add_argument("--copies", type=int, default=1, help="copies of each film (default 1)")
    s.add_argument("--wait", action="store_true",
                   help="show progress until the job ends; exit 1 with the reason when it fails")  # fmt: skip
    s = sub.add_parser(
        "queue", parents=[common], help="the durable job queue: list, retry ID, cancel ID"
    )
    s.add_argument("action", nargs="?", choices=["list", "retry", "cancel"], help="default: list")
    s.add_argument("id", nargs="?", type=int, help="the job, for retry and cancel")
    s.add_argument("--json", action="store_true", help="a JSON array of jobs (for scripts)")
    s = sub.add_parser(
        "route", parents=[common], help="the routing table: studies sent to AEs by themselves"
    )
    rsub = s.add_subparsers(dest="action", required=True)
    r = rsub.add_parser("add", parents=[common], help="add or replace a route")
    r.add_argument("name", metavar="NAME")
    r.add_argument("--to", action="append", required=True, metavar="AE",
                   help="a destination from the AE table (repeat for more)")  # fmt: skip
    r.add_argument("--from-ae", metavar="AE", help="only images sent by this calling AE (* ?)")
    r.add_argument("--match", action="append", default=[], metavar="KEY=PATTERN",
                   help="only studies whose KEY matches PATTERN (* ?), e.g. Modality=CT; "
                   "repeat: all must match")  # fmt: skip
    when = r.add_mutually_exclusive_group()
    when.add_argument("--window", metavar="HH:MM-HH:MM", help="send only inside this daily window")
    when.add_argument("--at", metavar="HH:MM", help="send at this hour")
    r.add_argument("--retries", type=int, default=3,
                   help="failure answers before a job is failed (default 3)")  # fmt: skip
    r.add_argument("--commit", action="store_true", help="ask for storage commitment")
    r.add_argument("--purge-after", action="store_true",
                   help="delete the local copy once every destination has it")  # fmt: skip
    r.add_argument("--notify", action="store_true",
                   help="send an Instance Availability Notification, not the images")  # fmt: skip
    r = rsub.add_parser("list", parents=[common], help="list the routes")
    r.add_argument("--json", action="store_true", help="a JSON array (for scripts)")
    r = rsub.add_parser("remove", parents=[common], help="remove a route")
    r.add_argument("name", metavar="NAME")
    _remote_parsers(sub, common)
    _worklist_parser(sub, common)
    s = sub.add_parser("frontpanel", parents=[common], help="drive the front panel display")
    s.add_argument("--once", action="store_true", help="render once and exit")
    return p


def one_line(text: str, limit: int = 400) -> str:
    """Errors are one line for operators, whatever a tool printed."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _leave_out_unused_drivers(cfg: config.Config) -> None:
    """peewee loads the PostgreSQL driver whenever it is installed, 4.6 MB in
    every process; a box whose index is SQLite never uses it."""
    if cfg.database_url.startswith("sqlite"):
        sys.modules.setdefault("psycopg2", None)  # type: ignore[arg-type]  # None: blocks the import


def _leave_out_downloads() -> None:
    """pydicom loads requests (for its test-file downloads) whenever it is installed:
    about 7 MB in each daemon and worker process of a development venv, where a test
    tool brings it. pacsbox never downloads and the image does not ship it."""
    sys.modules.setdefault("requests", None)  # type: ignore[arg-type]  # None: blocks the import


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:
        logging.basicConfig(level=logging.WARNING, format="pacsbox: %(message)s")
    else:
        logging.basicConfig(level=logging.DEBUG)
    try:
        cfg = config.load(args.config)
        _leave_out_unused_drivers(cfg)
        return COMMANDS[args.cmd](args, cfg)
    except KeyboardInterrupt:
        print("pacsbox: interrupted", file=sys.stderr)
        return 130
    except (ConfigError, PacsboxError) as exc:
        if args.debug:
            raise
        print(f"pacsbox: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        if args.debug:
            raise
        print(f"pacsbox: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
