"""Configuration: the only package that reads the environment and the TOML file."""

from config.archive import ArchiveConfig, TransferTuning
from config.environment import Environment, LedgerEnvironment
from config.errors import ConfigError
from config.settings import LedgerSettings, Settings, load_settings
from config.storages import CreateOnly, S3Options, StorageConfig

__all__ = [
    "ArchiveConfig",
    "ConfigError",
    "CreateOnly",
    "Environment",
    "LedgerEnvironment",
    "LedgerSettings",
    "S3Options",
    "Settings",
    "StorageConfig",
    "TransferTuning",
    "load_settings",
]
