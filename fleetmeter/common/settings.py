"""Layered configuration shared by every command: defaults < config file < environment < flags.

Each command declares one ``BaseSettings`` subclass that derives from :class:`LayeredSettings`. Its
``config_file`` field (the ``--config`` flag) names a TOML or YAML file; environment variables are
``FLEETMETER_<FIELD>`` with ``__`` between nested sections (``FLEETMETER_KAFKA__TOPIC``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from fleetmeter.schemas.wire import DEFAULT_TOPIC

S = TypeVar("S", bound="LayeredSettings")


def _split_commas(value: Any) -> Any:
    return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value


#: A list of strings that may also be given as one comma-separated string (flags, environment).
CommaList = Annotated[list[str], BeforeValidator(_split_commas)]


class ConfigError(Exception):
    """A configuration that cannot start: the message names each offending field."""


class Section(BaseModel):
    """A nested configuration section; unknown keys are typos, so they are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(Section):
    """How to reach the Kafka cluster (shared by collectors and pipeline workers)."""

    bootstrap_servers: CommaList = Field(default=["localhost:9092"], min_length=1)
    topic: str = Field(default=DEFAULT_TOPIC, min_length=1)
    client_id: str = "fleetmeter"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = Field(
        default=None, description="File holding the SASL password (e.g. a mounted secret)."
    )
    request_timeout_ms: int = Field(default=10_000, gt=0)

    def password(self) -> str | None:
        """The SASL password, read from its file when one is configured."""
        if self.sasl_password_file is not None:
            return self.sasl_password_file.read_text().strip()
        return self.sasl_password.get_secret_value() if self.sasl_password else None


class EndpointSettings(Section):
    """Where a command serves its Prometheus /metrics (each command sets its own default port)."""

    address: str = "0.0.0.0"
    port: int = Field(default=0, ge=0, le=65535, description="0: any free port.")


class LoggingSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"


class LayeredSettings(BaseSettings):
    """Base for a command's settings; see the module docstring for the layering."""

    model_config = SettingsConfigDict(
        env_prefix="FLEETMETER_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    config_file: Path | None = Field(default=None, description="TOML or YAML file with these settings.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        assert isinstance(init_settings, InitSettingsSource)
        config_file = init_settings.init_kwargs.get("config_file")
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings, file_secret_settings)
        if config_file is None:
            return sources
        return (*sources, _config_file_source(settings_cls, Path(config_file)))


def _config_file_source(settings_cls: type[BaseSettings], path: Path) -> PydanticBaseSettingsSource:
    if not path.is_file():
        raise ConfigError(f"config_file: {path} does not exist or is not a file")
    if path.suffix == ".toml":
        return TomlConfigSettingsSource(settings_cls, toml_file=path)
    if path.suffix in (".yaml", ".yml"):
        return YamlConfigSettingsSource(settings_cls, yaml_file=path)
    raise ConfigError(f"config_file: {path} must end in .toml, .yaml or .yml")


def load_settings(settings_cls: type[S], **flags: Any) -> S:
    """Build settings from every layer; flags left as ``None`` do not override lower layers."""
    given = {key: value for key, value in flags.items() if value is not None}
    try:
        return settings_cls(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '<root>'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from exc
    except yaml.MarkedYAMLError as exc:  # its text spans lines: one line with the place is enough
        mark = exc.problem_mark
        place = "" if mark is None else f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}: "
        raise ConfigError(f"config_file: {place}{exc.problem or exc.context}") from exc
    except RecursionError as exc:  # a file nested thousands of levels deep
        raise ConfigError(f"config_file: nested too deeply ({given.get('config_file')})") from exc
    except (OSError, ValueError, yaml.YAMLError) as exc:  # unreadable or unparsable config file
        raise ConfigError(f"config_file: {exc}") from exc


def flag_section(**flags: object) -> dict[str, object] | None:
    """Flags given for one nested section, or None so that lower layers keep the whole section."""
    given = {key: value for key, value in flags.items() if value is not None}
    return given or None
