"""``gru-viewer pacs``: the node list, a connection test, study/series search and retrieve, headless.

Imported when the CLI builds its parser, so only light modules load here; pynetdicom and requests load when a
command runs.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import signal
import sys
from typing import Any

from viewer.errors import ViewerError
from viewer.pacs.nodes import (
    AUTH_KINDS,
    DEFAULT_CALLING_AE,
    DEFAULT_LISTEN_BIND,
    DEFAULT_LISTEN_PORT,
    DEFAULT_MOVE_PORT,
    Node,
    NodeBook,
)

# The CLI's exit codes (see viewer.cli's epilog).
EXIT_OK, EXIT_ERROR, EXIT_NOTHING, EXIT_INTERRUPTED = 0, 1, 3, 130


def _quiet_pynetdicom(args: argparse.Namespace) -> None:
    """pynetdicom logs its own (terser) account of every failure at ERROR; ours says the same in a sentence."""
    if not getattr(args, "verbose", False):
        logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)


def _read_secret(prompt: str) -> str:
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


def _secret(node: Node, args: argparse.Namespace) -> str | None:
    """The node's DICOMweb secret: from stdin when asked, else where it was stored, else a prompt."""
    if node.auth == "none":
        return None
    if getattr(args, "secret_stdin", False):
        return _read_secret("")
    from viewer.pacs.credentials import SecretStore

    stored = SecretStore().get(node.name, node.secret_store)
    if stored is not None:
        return stored
    if sys.stdin.isatty():
        return getpass.getpass(f"secret for PACS node {node.name!r}: ")
    raise ViewerError(
        f"No secret for PACS node {node.name!r}", "it was not saved; pass it on stdin with --secret-stdin"
    )


def send_datasets(node_name: str, datasets: list, args: argparse.Namespace) -> str:
    """Store ``datasets`` on the node named ``node_name`` (``analyze --send``); the outcome in a sentence.

    Raises
    ------
    ViewerError
        The node is unknown or unreachable, or the archive refused any instance (the sentence says which).
    """
    from viewer.pacs import service

    _quiet_pynetdicom(args)
    node = NodeBook().get(node_name)
    sent = service.send(node, datasets, via=getattr(args, "via", "auto"), secret=_secret(node, args))
    if not sent.ok:
        raise ViewerError(f"PACS {node.name!r} did not take every result object", sent.summary())
    return f"sent to PACS {node.name!r}: {sent.summary()}"


def cmd_nodes_list(args: argparse.Namespace) -> int:
    """``pacs nodes list``: one line per node, never a secret."""
    nodes = NodeBook().load()
    for node in nodes:
        print(node.describe())
    if not nodes:
        print("no PACS node yet: add one with 'gru-viewer pacs nodes add'")
    return EXIT_OK


def cmd_nodes_add(args: argparse.Namespace) -> int:
    """``pacs nodes add``: validate, keep the secret (saying where), save the node."""
    from dataclasses import replace

    from viewer.pacs.credentials import SecretStore, describe_store

    node = Node(
        name=args.name,
        ae_title=args.ae_title or "",
        host=args.host or "",
        port=args.port,
        calling_ae=args.calling_ae,
        move_port=args.move_port,
        web_url=args.web_url or "",
        auth=args.auth,
        username=args.user or "",
    ).validated()
    book = NodeBook()
    secrets = SecretStore()
    note = ""
    if node.auth != "none":
        secret = _read_secret(f"{'password' if node.auth == 'basic' else 'token'} for {node.name!r}: ")
        if not secret:
            raise ViewerError("No secret given", f"{node.auth} authentication needs one")
        where = secrets.put(node.name, secret, args.secret_storage)
        node = replace(node, secret_store=where)
        note = describe_store(where, secrets.file)
    else:
        secrets.delete(node.name)
    book.put(node)
    print(f"saved {node.describe()}")
    if note:
        print(note)
    return EXIT_OK


def cmd_nodes_remove(args: argparse.Namespace) -> int:
    """``pacs nodes remove``: the node and its secret."""
    from viewer.pacs.credentials import SecretStore

    node = NodeBook().remove(args.name)
    SecretStore().delete(node.name)
    print(f"removed {node.name}")
    return EXIT_OK


def cmd_test(args: argparse.Namespace) -> int:
    """``pacs test``: a sentence saying it works, or (raised) why not."""
    from viewer.pacs import service

    _quiet_pynetdicom(args)
    node = NodeBook().get(args.node)
    print(service.test(node, _secret(node, args), args.via, args.timeout))
    return EXIT_OK


def _query(args: argparse.Namespace) -> Any:
    from viewer.pacs.query import StudyQuery, dicom_date

    return StudyQuery(
        patient_id=args.patient_id or "",
        patient_name=args.name or "",
        date_from=dicom_date(args.date_from, "--date-from"),
        date_to=dicom_date(args.date_to, "--date-to"),
        accession=args.accession or "",
        modality=args.modality or "",
    )


def cmd_find(args: argparse.Namespace) -> int:
    """``pacs find``: the rows as a table; exit 3 when none matched."""
    from viewer.pacs import service
    from viewer.pacs.query import format_series, format_studies

    _quiet_pynetdicom(args)
    node = NodeBook().get(args.node)
    secret = _secret(node, args)
    if args.series:
        result = service.find_series(node, args.series, limit=args.limit, via=args.via, secret=secret)
        print(format_series(result))
    else:
        result = service.find_studies(node, _query(args), limit=args.limit, via=args.via, secret=secret)
        print(format_studies(result))
    return EXIT_OK if result.rows else EXIT_NOTHING


def cmd_get(args: argparse.Namespace) -> int:
    """``pacs get``: retrieve with progress on stderr, Ctrl+C as C-CANCEL; prints the folder to open."""
    from viewer.pacs import service
    from viewer.pacs.retrieve import CancelToken, RetrieveProgress

    _quiet_pynetdicom(args)
    node = NodeBook().get(args.node)
    secret = _secret(node, args)
    token = CancelToken()
    show = not args.quiet and sys.stderr.isatty()

    def progress(p: RetrieveProgress) -> None:
        if show:
            left = "?" if p.remaining is None else p.remaining
            sys.stderr.write(f"\r{p.completed} received, {p.failed} failed, {left} remaining   ")
            sys.stderr.flush()

    previous = signal.signal(signal.SIGINT, lambda *_: token.cancel())  # Ctrl+C: C-CANCEL, keep what arrived
    try:
        result = service.retrieve(
            node,
            args.study,
            args.series,
            move=args.move,
            via=args.via,
            secret=secret,
            progress=progress,
            cancel=token,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
        if show:
            sys.stderr.write("\n")
    print(result.summary())
    if result.files:
        print(f"stored in {result.folder}")
        print(f"open with: gru-viewer gui {result.folder}   (or: gru-viewer analyze {result.folder})")
    if result.cancelled:
        return EXIT_INTERRUPTED
    return EXIT_OK if result.ok else EXIT_ERROR


def cmd_listen(args: argparse.Namespace) -> int:
    """``pacs listen``: the C-STORE SCP in the foreground until Ctrl+C; one line per indexed batch."""
    import threading

    from viewer.pacs.listener import ListenerConfig, StorageListener
    from viewer.pacs.store import folders_of

    _quiet_pynetdicom(args)
    config = ListenerConfig(ae_title=args.ae_title, bind=args.bind, port=args.port, allowed=tuple(args.allow))
    lock = threading.Lock()
    total = 0

    def indexed(paths: list) -> None:
        nonlocal total
        with lock:
            total += len(paths)
            folders = ", ".join(str(f) for f in folders_of(paths))
            print(f"received {len(paths)} instance(s), {total} in all: {folders}", flush=True)

    def rejected(calling: str, address: str) -> None:
        print(
            f"rejected an association from {calling!r} at {address}: not an allowed calling AE title",
            file=sys.stderr,
            flush=True,
        )

    listener = StorageListener(config, on_indexed=indexed, on_rejected=rejected)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        listener.start()
        print(
            f"listening: {listener.config.describe()}; storing into {listener.store.root}; Ctrl+C stops",
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    finally:
        signal.signal(signal.SIGINT, previous)
        listener.stop()
    print(
        f"stopped: {listener.received} received, {listener.refused} refused, "
        f"{listener.rejected} association(s) rejected",
        flush=True,
    )
    return EXIT_OK


def add_pacs_parser(sub: Any) -> None:
    """Add ``pacs`` and its subcommands to the CLI's subparsers."""
    pacs = sub.add_parser("pacs", help="PACS nodes, connection test, query and retrieve (DIMSE or DICOMweb)")
    cmds = pacs.add_subparsers(dest="pacs_command", metavar="ACTION", required=True)

    nodes = cmds.add_parser("nodes", help="list, add or remove PACS nodes")
    actions = nodes.add_subparsers(dest="nodes_command", metavar="ACTION", required=True)
    p = actions.add_parser("list", help="list the nodes (never their secrets)")
    p.set_defaults(func=cmd_nodes_list)
    p = actions.add_parser("add", help="add a node, or replace the one of the same name")
    p.add_argument("name", help="a name for the node")
    p.add_argument("--ae-title", help="the PACS's AE title (called AE; at most 16 ASCII characters)")
    p.add_argument("--host", help="the PACS's host name or address")
    p.add_argument("--port", type=int, default=104, help="the PACS's DICOM port (default 104)")
    p.add_argument(
        "--calling-ae",
        default=DEFAULT_CALLING_AE,
        help=f"our AE title towards it (default {DEFAULT_CALLING_AE})",
    )
    p.add_argument(
        "--move-port",
        type=int,
        default=DEFAULT_MOVE_PORT,
        help=f"where our storage SCP listens during a C-MOVE (default {DEFAULT_MOVE_PORT}; the PACS must know it)",
    )
    p.add_argument("--web-url", help="DICOMweb base URL, e.g. https://pacs.example/dicom-web")
    p.add_argument(
        "--auth", choices=AUTH_KINDS, default="none", help="DICOMweb authentication (default none)"
    )
    p.add_argument("--user", help="user name for basic authentication")
    p.add_argument(
        "--secret-storage",
        choices=("auto", "file", "session"),
        default="auto",
        help="where the password/token goes: auto = the platform keyring, else a file readable by you only; "
        "session = not saved (asked again, or read with --secret-stdin, by each command). The secret itself is "
        "read from stdin or a prompt, never from the command line",
    )
    p.set_defaults(func=cmd_nodes_add)
    p = actions.add_parser("remove", help="remove a node and its secret")
    p.add_argument("name")
    p.set_defaults(func=cmd_nodes_remove)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("node", help="the node's name (see 'pacs nodes list')")
        p.add_argument(
            "--via",
            choices=("auto", "dimse", "web"),
            default="auto",
            help="protocol (default: DIMSE if configured)",
        )
        p.add_argument(
            "--secret-stdin", action="store_true", help="read the DICOMweb password/token from stdin"
        )

    p = cmds.add_parser("test", help="C-ECHO (or a QIDO-RS query) and say why it fails, within 5 s")
    common(p)
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default 5)")
    p.set_defaults(func=cmd_test)

    p = cmds.add_parser("find", help="search studies (C-FIND / QIDO-RS), or the series of one study")
    common(p)
    p.add_argument("--patient-id")
    p.add_argument("--name", help="patient name; * and ? are wildcards, e.g. 'DOE^J*'")
    p.add_argument("--date-from", help="study date from, YYYY-MM-DD")
    p.add_argument("--date-to", help="study date to, YYYY-MM-DD")
    p.add_argument("--accession")
    p.add_argument("--modality", help="a modality in the study, e.g. CT")
    p.add_argument("--series", metavar="STUDY_UID", help="list the series of this study instead")
    p.add_argument("--limit", type=int, default=500, help="at most this many rows (default 500)")
    p.set_defaults(func=cmd_find)

    p = cmds.add_parser(
        "get", help="retrieve a study or series into the private store (C-GET / C-MOVE / WADO-RS)"
    )
    common(p)
    p.add_argument("study", metavar="STUDY_UID")
    p.add_argument("--series", metavar="SERIES_UID", help="only this series")
    p.add_argument("--move", action="store_true", help="C-MOVE to our own storage SCP instead of C-GET")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_get)

    p = cmds.add_parser(
        "listen",
        help="receive pushes (C-STORE SCP) into the private store, in the foreground until Ctrl+C",
        description="Accept C-STORE from the calling AE titles given with --allow (others are rejected with "
        "A-ASSOCIATE-RJ, reason 'calling AE title not recognised'); files go into the private store, named "
        "by hash, and are indexed as they arrive. The PACS must know our AE title, host and port.",
    )
    p.add_argument(
        "--allow", nargs="+", required=True, metavar="AE", help="calling AE titles allowed to send"
    )
    p.add_argument(
        "--ae-title", default=DEFAULT_CALLING_AE, help=f"our AE title (default {DEFAULT_CALLING_AE})"
    )
    p.add_argument(
        "--bind",
        default=DEFAULT_LISTEN_BIND,
        help=f"the interface address to listen on (default {DEFAULT_LISTEN_BIND})",
    )
    p.add_argument(
        "--port", type=int, default=DEFAULT_LISTEN_PORT, help=f"the TCP port (default {DEFAULT_LISTEN_PORT})"
    )
    p.set_defaults(func=cmd_listen)
