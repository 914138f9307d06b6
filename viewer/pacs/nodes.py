"""The PACS node list: what each archive is called, where it listens, and who we are to it.

Kept per user as JSON (``pacs-nodes.json``) in the user config folder (``$GRU_VIEWER_CONFIG_DIR`` overrides it),
readable by the user only. Secrets (a DICOMweb password or token) are never in this file: :mod:`.credentials`
keeps them, and a node records only where (``secret_store``).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from urllib.parse import urlparse

from viewer.errors import ViewerError

CONFIG_DIR_ENV = "GRU_VIEWER_CONFIG_DIR"
NODES_FILE = "pacs-nodes.json"
DEFAULT_CALLING_AE = "GRUVIEWER"
DEFAULT_MOVE_PORT = 11113
#: The receiver (:mod:`.listener`): DICOM's registered port, on loopback unless another interface is chosen.
DEFAULT_LISTEN_PORT, DEFAULT_LISTEN_BIND = 11112, "127.0.0.1"
AUTH_KINDS = ("none", "basic", "bearer")
_FORMAT = 1


def config_dir() -> Path:
    """``$GRU_VIEWER_CONFIG_DIR``, else the platform's user config folder."""
    override = os.environ.get(CONFIG_DIR_ENV)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("gru-viewer", appauthor=False))


def validate_ae_title(value: str, what: str = "AE title") -> str:
    """An AE title as the standard allows it (PS3.5 6.2, VR AE): at most 16 characters of printable ASCII, no
    backslash, not only spaces. Leading and trailing spaces are not significant and are dropped.

    Raises
    ------
    ViewerError
        Saying which rule the value breaks.
    """
    if any(not (0x20 <= ord(c) <= 0x7E) for c in value):
        raise ViewerError(f"Invalid {what}", f"{value!r} holds a character that is not printable ASCII")
    if "\\" in value:
        raise ViewerError(f"Invalid {what}", f"{value!r} holds a backslash")
    title = value.strip(" ")
    if not title:
        raise ViewerError(f"Invalid {what}", "it is empty or only spaces")
    if len(title) > 16:
        raise ViewerError(
            f"Invalid {what}", f"{title!r} is {len(title)} characters long; at most 16 are allowed"
        )
    return title


def _validate_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 64 or any(not c.isprintable() for c in name):
        raise ViewerError("Invalid node name", "use 1-64 printable characters")
    return name


def _validate_port(port: int, what: str) -> int:
    if not 1 <= port <= 65535:
        raise ViewerError(f"Invalid {what}", f"{port} is not a TCP port (1-65535)")
    return port


@dataclass(frozen=True, slots=True)
class Node:
    """One PACS: a DIMSE peer (``ae_title``, ``host``, ``port``), a DICOMweb service (``web_url``), or both.

    ``calling_ae`` is our own AE title towards this node; the PACS must know it (and, for C-MOVE, that it is
    reached at our host on ``move_port``, where our storage SCP listens during a move). ``auth`` and
    ``username`` describe DICOMweb credentials; the secret itself lives in :mod:`.credentials`, and
    ``secret_store`` says where ("keyring", "file", "session" or "" for none).
    """

    name: str
    ae_title: str = ""
    host: str = ""
    port: int = 104
    calling_ae: str = DEFAULT_CALLING_AE
    move_port: int = DEFAULT_MOVE_PORT
    web_url: str = ""
    auth: str = "none"
    username: str = ""
    secret_store: str = ""

    @property
    def has_dimse(self) -> bool:
        """Whether the node has a DIMSE address (AE title and host)."""
        return bool(self.ae_title and self.host)

    @property
    def has_web(self) -> bool:
        """Whether the node has a DICOMweb base URL."""
        return bool(self.web_url)

    def validated(self) -> Node:
        """This node with its fields checked and normalised.

        Raises
        ------
        ViewerError
            A field is invalid, or the node has neither a DIMSE address nor a DICOMweb URL.
        """
        node = replace(
            self,
            name=_validate_name(self.name),
            calling_ae=validate_ae_title(self.calling_ae, "calling AE title"),
        )
        _validate_port(node.move_port, "move port")
        if node.ae_title or node.host:
            if not (node.ae_title and node.host):
                raise ViewerError("Incomplete DIMSE address", "give both the AE title and the host")
            node = replace(
                node, ae_title=validate_ae_title(node.ae_title, "called AE title"), host=node.host.strip()
            )
            _validate_port(node.port, "port")
        if node.web_url:
            url = urlparse(node.web_url.strip())
            if url.scheme not in ("http", "https") or not url.netloc:
                raise ViewerError("Invalid DICOMweb URL", f"{node.web_url!r} is not an http(s) URL")
            if url.username or url.password:
                raise ViewerError(
                    "Invalid DICOMweb URL", "put credentials in --user/--password, not in the URL"
                )
            node = replace(node, web_url=node.web_url.strip().rstrip("/"))
        if not node.has_dimse and not node.has_web:
            raise ViewerError("Incomplete node", "give an AE title, host and port, or a DICOMweb URL")
        if node.auth not in AUTH_KINDS:
            raise ViewerError("Invalid authentication", f"{node.auth!r}; choose from {', '.join(AUTH_KINDS)}")
        if node.auth == "basic" and not node.username:
            raise ViewerError("Incomplete credentials", "basic authentication needs a user name")
        return node

    def describe(self) -> str:
        """One line for listings (never a secret)."""
        parts = []
        if self.has_dimse:
            parts.append(f"DIMSE {self.ae_title}@{self.host}:{self.port} as {self.calling_ae}")
        if self.has_web:
            auth = {"none": "no auth", "basic": f"basic auth as {self.username}", "bearer": "bearer token"}[
                self.auth
            ]
            parts.append(f"DICOMweb {self.web_url} ({auth})")
        return f"{self.name}: " + "; ".join(parts)


class NodeBook:
    """The node list in one JSON file (default: ``pacs-nodes.json`` in :func:`config_dir`)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else config_dir() / NODES_FILE

    def load(self) -> list[Node]:
        """The nodes, in the order they were added (none when the file does not exist yet).

        Raises
        ------
        ViewerError
            The file exists but cannot be read or is not a node list.
        """
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise ViewerError("Cannot read the PACS node list", str(exc), self.path) from exc
        known = {f.name for f in fields(Node)}
        try:
            return [Node(**{k: v for k, v in item.items() if k in known}) for item in raw["nodes"]]
        except (KeyError, TypeError) as exc:
            raise ViewerError("Cannot read the PACS node list", "not a node list", self.path) from exc

    def save(self, nodes: list[Node]) -> None:
        """Write the list atomically, readable by the user only."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = json.dumps({"format": _FORMAT, "nodes": [asdict(n) for n in nodes]}, indent=2)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".nodes-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, name: str) -> Node:
        """The node called ``name``.

        Raises
        ------
        ViewerError
            No node has that name.
        """
        for node in self.load():
            if node.name == name:
                return node
        raise ViewerError("Unknown PACS node", f"{name!r}; see 'gru-viewer pacs nodes list'")

    def put(self, node: Node) -> Node:
        """Add ``node`` (validated), replacing one of the same name; returns what was stored."""
        node = node.validated()
        nodes = [n for n in self.load() if n.name != node.name]
        self.save([*nodes, node])
        return node

    def remove(self, name: str) -> Node:
        """Remove the node called ``name``; returns it.

        Raises
        ------
        ViewerError
            No node has that name.
        """
        node = self.get(name)
        self.save([n for n in self.load() if n.name != name])
        return node


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """Where the receiver (:mod:`.listener`) listens and whom it accepts. ``allowed``: the calling AE titles that may store to us
    (at least one: the receiver never accepts just anyone)."""

    ae_title: str = DEFAULT_CALLING_AE
    bind: str = DEFAULT_LISTEN_BIND
    port: int = DEFAULT_LISTEN_PORT
    allowed: tuple[str, ...] = ()

    def validated(self) -> ListenerConfig:
        """This configuration with its AE titles checked and normalised.

        Raises
        ------
        ViewerError
            An AE title or the port is invalid, or no calling AE title is allowed.
        """
        if not 1 <= self.port <= 65535:
            raise ViewerError("Invalid receiver port", f"{self.port} is not a TCP port (1-65535)")
        allowed = tuple(dict.fromkeys(validate_ae_title(a, "allowed calling AE title") for a in self.allowed))
        if not allowed:
            raise ViewerError(
                "The receiver accepts nobody", "list the calling AE titles allowed to send (e.g. the PACS's)"
            )
        return replace(
            self,
            ae_title=validate_ae_title(self.ae_title, "receiver AE title"),
            bind=self.bind.strip() or DEFAULT_LISTEN_BIND,
            allowed=allowed,
        )

    def describe(self) -> str:
        """One line: where and for whom."""
        return f"{self.ae_title} on {self.bind}:{self.port}, accepting {', '.join(self.allowed)}"
