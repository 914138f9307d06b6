"""Where a node's DICOMweb secret (password or bearer token) is kept: the platform keyring when a usable
backend exists, else a file readable by the user only, or only in memory for this session.

keyring's ``fail`` and ``null`` backends (and a chainer with no backend behind it) mean there is no keyring
here. Secrets never reach a log or an exception message.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from viewer.errors import ViewerError
from viewer.pacs.nodes import config_dir

SERVICE = "gru-viewer-pacs"
SECRETS_FILE = "pacs-secrets.json"
KEYRING, FILE, SESSION = "keyring", "file", "session"

log = logging.getLogger(__name__)

_session: dict[str, str] = {}


def keyring_usable() -> bool:
    """Whether the platform keyring has a real backend here."""
    try:
        import keyring
        from keyring.backends import chainer, fail, null

        backend = keyring.get_keyring()
    except Exception as exc:  # a broken keyring configuration is "no keyring", not a crash
        log.info("keyring unavailable: %s", type(exc).__name__)
        return False
    if isinstance(backend, fail.Keyring | null.Keyring):
        return False
    if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
        return False
    return True


def describe_store(store: str, path: Path | None = None) -> str:
    """A sentence saying where a secret was put."""
    if store == KEYRING:
        return "secret stored in the platform keyring"
    if store == FILE:
        return f"no usable keyring here: secret stored in {path or secrets_file()}, readable by you only (mode 0600)"
    return "secret kept for this session only (not saved)"


def secrets_file() -> Path:
    """The 0600 file secrets go to where there is no keyring."""
    return config_dir() / SECRETS_FILE


class SecretStore:
    """Puts, gets and deletes the secret of a node by name."""

    def __init__(self, file: str | os.PathLike[str] | None = None) -> None:
        self.file = Path(file) if file is not None else secrets_file()

    def put(self, node_name: str, secret: str, prefer: str = "auto") -> str:
        """Keep ``secret`` for ``node_name``; returns where: :data:`KEYRING`, :data:`FILE` or :data:`SESSION`.

        ``prefer``: "auto" (keyring, else file), "file", or "session".
        """
        if prefer not in ("auto", FILE, SESSION):
            raise ValueError(prefer)
        self.delete(node_name)
        if prefer == SESSION:
            _session[node_name] = secret
            return SESSION
        if prefer == "auto" and keyring_usable():
            import keyring
            from keyring.errors import KeyringError

            try:
                keyring.set_password(SERVICE, node_name, secret)
                return KEYRING
            except KeyringError as exc:
                log.warning("keyring refused the secret (%s): using a private file", type(exc).__name__)
        data = self._read_file()
        data[node_name] = secret
        self._write_file(data)
        return FILE

    def get(self, node_name: str, store: str) -> str | None:
        """The secret kept in ``store`` for ``node_name``, or None."""
        if store == SESSION:
            return _session.get(node_name)
        if store == FILE:
            return self._read_file().get(node_name)
        if store == KEYRING:
            import keyring
            from keyring.errors import KeyringError

            try:
                return keyring.get_password(SERVICE, node_name)
            except KeyringError as exc:
                raise ViewerError("Cannot read the secret from the keyring", type(exc).__name__) from exc
        return None

    def delete(self, node_name: str) -> None:
        """Forget the secret of ``node_name`` wherever it is kept."""
        _session.pop(node_name, None)
        data = self._read_file()
        if node_name in data:
            del data[node_name]
            self._write_file(data)
        if keyring_usable():
            import keyring
            from keyring.errors import KeyringError, PasswordDeleteError

            try:
                keyring.delete_password(SERVICE, node_name)
            except (PasswordDeleteError, KeyringError):
                pass

    def _read_file(self) -> dict[str, str]:
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ViewerError("Cannot read the PACS secrets file", type(exc).__name__, self.file) from exc
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _write_file(self, data: dict[str, str]) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=self.file.parent, prefix=".secrets-", suffix=".tmp")  # 0600 from birth
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f)
            os.replace(tmp, self.file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
