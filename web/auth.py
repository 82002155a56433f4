"""Who is asking: bearer tokens with scopes, kept as SHA-256 hashes in a file that can be rotated while the
server runs (it is re-read when it changes), and the admin token of ``http.token`` beside them.

Scopes: ``admin`` (everything, the SQL endpoint included), ``viewer`` (every API answer and page, read-only,
no SQL), ``tenant`` (only its tenant's rows, in every answer). Tokens are random (``fleetmeter token add``), so a
plain SHA-256 of each is enough to keep the file from being a list of passwords.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import structlog
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fleetmeter.common.settings import ConfigError

log = structlog.get_logger(__name__)

Scope = Literal["admin", "viewer", "tenant"]
TOKEN_PREFIX = "fm_"


class TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the token, hex.")
    scope: Scope
    tenant: str | None = Field(default=None, min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")

    @model_validator(mode="after")
    def _tenant_with_its_scope(self) -> TokenEntry:
        if (self.scope == "tenant") != (self.tenant is not None):
            raise ValueError("a tenant token names its tenant, and only a tenant token does")
        return self


class TokenFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokens: list[TokenEntry] = Field(default_factory=list, max_length=100_000)


@dataclass(frozen=True)
class Principal:
    """The caller: its token's name and scope, and for a tenant token, the one tenant it may see."""

    name: str
    scope: Scope
    tenant: str | None = None

    @property
    def sees_everything(self) -> bool:
        return self.scope in ("admin", "viewer")

    def may_see(self, tenant: str) -> bool:
        return self.sees_everything or tenant == self.tenant


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def read_token_file(path: Path, missing_ok: bool = False) -> TokenFile:
    """The file's tokens; a file that does not hold a valid list (or is missing, unless ``missing_ok``) raises
    ConfigError naming it."""
    if missing_ok and not path.exists():
        return TokenFile()
    try:
        loaded = yaml.safe_load(path.read_text())
        return TokenFile.model_validate(loaded or {})
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"{path}: not a fleetmeter tokens file: {exc}") from exc


def add_token(path: Path, name: str, scope: Scope, tenant: str | None) -> str:
    """Append a new token's hash to the file (created if absent); the token itself, shown once."""
    token = new_token()
    entries = read_token_file(path, missing_ok=True).tokens
    if any(entry.name == name for entry in entries):
        raise ConfigError(f"{path} already has a token named {name!r}: remove it first, or choose another name")
    entries.append(TokenEntry(name=name, sha256=digest(token), scope=scope, tenant=tenant))
    text = yaml.safe_dump(TokenFile(tokens=entries).model_dump(exclude_none=True), sort_keys=False)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.chmod(0o600)
    temporary.replace(path)  # a reader sees the old file or the new one, never half of it
    return token


class TokenStore:
    """The tokens a server accepts, re-read from the tokens file when its modification time or size changes (a
    file that fails to load keeps the tokens read before, and says so in the log)."""

    def __init__(self, admin_token: str | None, tokens_file: Path | None) -> None:
        self._admin = admin_token.encode() if admin_token else None
        self._file = tokens_file
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._by_digest: dict[str, TokenEntry] = {}
        if tokens_file is not None:
            self._by_digest = self._load(tokens_file)  # a broken file at start: the server does not start
            self._stamp = self._stat(tokens_file)

    def principal(self, token: str) -> Principal | None:
        """Who holds ``token``; None for a token nobody was given."""
        if self._admin is not None and hmac.compare_digest(token.encode(), self._admin):
            return Principal("admin (http.token)", "admin")
        entry = self._entries().get(digest(token))
        return None if entry is None else Principal(entry.name, entry.scope, entry.tenant)

    def _entries(self) -> dict[str, TokenEntry]:
        if self._file is None:
            return self._by_digest
        stamp = self._stat(self._file)
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    try:
                        self._by_digest = self._load(self._file)
                        log.info("tokens reloaded", file=str(self._file), tokens=len(self._by_digest))
                    except ConfigError as exc:
                        log.error("tokens file not reloaded: the tokens read before stay", error=str(exc))
                    self._stamp = stamp
        return self._by_digest

    @staticmethod
    def _stat(path: Path) -> tuple[int, int] | None:
        try:
            status = path.stat()
        except OSError:
            return None
        return status.st_mtime_ns, status.st_size

    @staticmethod
    def _load(path: Path) -> dict[str, TokenEntry]:
        return {entry.sha256: entry for entry in read_token_file(path).tokens}
