"""Configuration: the only package that reads the environment and the TOML file."""

from config.settings import (
    ArchiveConfig,
    ConfigError,
    Environment,
    LedgerEnvironment,
    LedgerSettings,
    S3Options,
    Settings,
    StorageConfig,
    TransferTuning,
    load_settings,
)

__all__ = [
    "ArchiveConfig",
    "ConfigError",
    "Environment",
    "LedgerEnvironment",
    "LedgerSettings",
    "S3Options",
    "Settings",
    "StorageConfig",
    "TransferTuning",
    "load_settings",
]
