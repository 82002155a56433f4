"""``fleetmeter serve`` (the API, the dashboard and the SQL endpoint) and ``fleetmeter token`` (tokens with
scopes, kept as hashes)."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn

from fleetmeter.common.listen import PortUnavailable, endpoint, listening_socket
from fleetmeter.common.settings import ConfigError, flag_section, load_settings
from fleetmeter.sql.settings import AnalysisSettings
from fleetmeter.web.app import create_app
from fleetmeter.web.auth import Scope, add_token


def serve(
    config: Annotated[str | None, typer.Option(help="TOML or YAML file: warehouse, prices, http.",
                                               envvar="FLEETMETER_CONFIG")] = None,
    warehouse: Annotated[str | None, typer.Option(help="Warehouse directory or URI.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default 9412).")] = None,
) -> None:
    """Serve the REST API (/v1), the dashboard (/) and, for admin tokens, SQL over the warehouse's views."""
    try:
        settings = load_settings(AnalysisSettings, config_file=config, warehouse=warehouse,
                                 http=flag_section(port=port))
        sock = listening_socket(settings.http.address, settings.http.port, "http.port, --port")
        app = create_app(settings)
    except (ConfigError, PortUnavailable, OSError) as exc:
        typer.echo(f"fleetmeter serve: {exc}", err=True)
        raise typer.Exit(2) from exc
    host, bound = sock.getsockname()[:2]
    typer.echo(f"fleetmeter serve: listening on http://{endpoint(host, bound)}/", err=True)
    serve_on(app, sock)


def serve_on(app: Any, sock: socket.socket) -> None:
    """Serve ``app`` on a bound socket until SIGTERM or Ctrl-C (which ends it as cleanly: exit status 0)."""
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn raises the Ctrl-C again once it has shut down
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


token_app = typer.Typer(help="Tokens for `fleetmeter serve`, stored as hashes in http.tokens_file.",
                        no_args_is_help=True)


@token_app.command("add")
def add(
    file: Annotated[Path, typer.Option(help="The tokens file (http.tokens_file); created if absent.")],
    name: Annotated[str, typer.Option(help="Who or what holds it (unique in the file).")],
    scope: Annotated[str, typer.Option(help="admin, viewer or tenant.")],
    tenant: Annotated[str | None, typer.Option(help="For a tenant token: its tenant.")] = None,
) -> None:
    """Add a token and print it (once: the file keeps only its hash). A running server takes it at once."""
    if scope not in ("admin", "viewer", "tenant"):
        typer.echo("fleetmeter token add: --scope is admin, viewer or tenant", err=True)
        raise typer.Exit(2)
    if (scope == "tenant") != (tenant is not None):
        typer.echo("fleetmeter token add: a tenant token needs --tenant, and only a tenant token takes it", err=True)
        raise typer.Exit(2)
    chosen: Scope = scope  # type: ignore[assignment]
    try:
        token = add_token(file, name, chosen, tenant)
    except (ConfigError, ValueError, OSError) as exc:
        typer.echo(f"fleetmeter token add: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(token)
