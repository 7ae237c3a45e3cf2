"""Configuration loading and validation (config/: environment, TOML file, storages, messages)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config import ConfigError, load_settings
from config.types import parse_duration

BASE_ENV = {"STREAM_API_KEY": "k", "STREAM_API_SECRET": "very-secret-value"}


def env_with(tmp_path: Path, toml: str) -> dict[str, str]:
    path = tmp_path / "archiver.toml"
    path.write_text(toml)
    return BASE_ENV | {"ARCHIVER_CONFIG": str(path)}


def test_without_api_key_and_secret_it_names_both() -> None:
    with pytest.raises(ConfigError, match="STREAM_API_KEY, STREAM_API_SECRET"):
        load_settings({})


def test_with_only_the_api_key_and_secret_it_archives_to_a_local_directory() -> None:
    settings = load_settings(BASE_ENV)
    (storage,) = settings.archive.effective_storages()
    assert (storage.storage_type, storage.bucket) == ("local", "./archive")
    assert settings.archive.default_storage == storage.name
    assert settings.env.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.env.stream_base_url == "https://video.stream-io-api.com"
    assert settings.broker_url == settings.env.redis_url
    assert settings.archive.download_hosts == ("*.stream-io-cdn.com",)
    assert settings.archive.key_template == "{call_type}/{call_id}/{filename}"
    assert settings.archive.manifest_template == "{call_type}/{call_id}/manifest_{session_id}.json"


def test_the_broker_can_live_elsewhere() -> None:
    settings = load_settings(BASE_ENV | {"ARCHIVER_BROKER_URL": "redis://broker:6379/1"})
    assert settings.broker_url == "redis://broker:6379/1"


STREAM_SCHEMA = """
default_storage = "my-s3"
download_hosts = ["*.stream-io-cdn.com"]
key_template = "{call_type}/{call_id}/{filename}"

[call_types]
allhands = "my-s3"

[[storages]]
name = "my-s3"
storage_type = "s3"
bucket = "my-bucket"
path = "directory_name/"
[storages.aws_s3]
s3_region = "us-east-1"
s3_api_key = "AKIAEXAMPLE"
s3_secret = "env:MY_S3_SECRET"
s3_custom_endpoint_url = "http://127.0.0.1:9000"
"""


def test_stream_external_storage_schema_is_read_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_S3_SECRET", "from-the-environment")
    settings = load_settings(env_with(tmp_path, STREAM_SCHEMA))
    storage = settings.archive.storage("my-s3")
    assert storage.aws_s3 is not None
    assert storage.path == "directory_name/"
    assert storage.aws_s3.s3_secret is not None
    assert storage.aws_s3.s3_secret.get_secret_value() == "from-the-environment"
    assert settings.archive.call_types == {"allhands": "my-s3"}


def test_secrets_never_show_in_repr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_S3_SECRET", "from-the-environment")
    settings = load_settings(env_with(tmp_path, STREAM_SCHEMA))
    shown = repr(settings) + str(settings)
    for secret in ("from-the-environment", "AKIAEXAMPLE", "very-secret-value"):
        assert secret not in shown
    assert set(settings.secrets()) >= {"from-the-environment", "AKIAEXAMPLE", "very-secret-value"}


def test_a_secret_can_come_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("file-secret\n")
    toml = STREAM_SCHEMA.replace('"env:MY_S3_SECRET"', f'"file:{tmp_path / "secret"}"')
    settings = load_settings(env_with(tmp_path, toml))
    s3 = settings.archive.storage("my-s3").aws_s3
    assert s3 is not None and s3.s3_secret is not None
    assert s3.s3_secret.get_secret_value() == "file-secret"


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (('"env:MY_S3_SECRET"', '"env:NOT_SET_ANYWHERE"'), "storages[0].aws_s3.s3_secret",
         "NOT_SET_ANYWHERE is not set"),
        (('storage_type = "s3"', 'storage_type = "S3 "'), "storages[0].storage_type", "does not match the pattern"),
        (('storage_type = "s3"', 'storage_type = "gcs"'), "storages[0]", "aws_s3 does not belong"),
        (('s3_region = "us-east-1"', 's3_region = "us-east-1"\ns3_sse_kms_key_id = "k"'), "storages[0].aws_s3",
         "needs s3_sse"),
        (('s3_region = "us-east-1"', 's3_regoin = "us-east-1"'), "storages[0].aws_s3",
         "unknown key 's3_regoin': did you mean 's3_region'?"),
        (('default_storage = "my-s3"', 'default_storage = "nope"'), "(top level)", "no storage named 'nope'"),
        (('allhands = "my-s3"', 'allhands = "nope"'), "(top level)", "call_types.allhands"),
        (('key_template = "{call_type}/{call_id}/{filename}"', 'key_template = "{call}/{filename}"'),
         "key_template", "unknown or malformed placeholder"),
        (('key_template = "{call_type}/{call_id}/{filename}"', 'key_template = "{call_type}"'),
         "key_template", "must contain {filename}"),
        (('key_template = "{call_type}/{call_id}/{filename}"', 'manifest_template = "{call_id}/{filename}"'),
         "manifest_template", "unknown or malformed placeholder"),
        (('key_template = "{call_type}/{call_id}/{filename}"', 'manifest_template = "{call_id}/manifest.json"'),
         "manifest_template", "must contain {session_id}"),
        (('path = "directory_name/"', 'path = "../up"'), "storages[0].path", "'..'"),
        (('download_hosts = ["*.stream-io-cdn.com"]', 'download_hosts = []'), "download_hosts", "at least one"),
    ],
)
def test_errors_name_the_file_the_field_and_the_fault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: tuple[str, str], field: str, reason: str
) -> None:
    monkeypatch.setenv("MY_S3_SECRET", "x" * 8)
    toml = STREAM_SCHEMA.replace(*change)
    assert toml != STREAM_SCHEMA
    with pytest.raises(ConfigError) as caught:
        load_settings(env_with(tmp_path, toml))
    message = str(caught.value)
    assert str(tmp_path / "archiver.toml") in message
    assert field in message
    assert reason in message
    assert "x" * 8 not in message and "AKIAEXAMPLE" not in message


def test_an_s3_storage_needs_its_aws_s3_table(tmp_path: Path) -> None:
    toml = 'default_storage = "a"\n[[storages]]\nname = "a"\nstorage_type = "s3"\nbucket = "b"\n'
    with pytest.raises(ConfigError, match=r"storages\[0\]: .*\[storages\.aws_s3\]"):
        load_settings(env_with(tmp_path, toml))


def test_invalid_toml_and_missing_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(env_with(tmp_path, "default_storage = "))
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(BASE_ENV | {"ARCHIVER_CONFIG": str(tmp_path / "absent.toml")})


def test_stream_s3_is_a_reserved_route_not_a_storage(tmp_path: Path) -> None:
    settings = load_settings(env_with(tmp_path, STREAM_SCHEMA.replace('allhands = "my-s3"', 'allhands = "stream-s3"')
                                      .replace('"env:MY_S3_SECRET"', '"s"')))
    assert settings.archive.call_types["allhands"] == "stream-s3"
    with pytest.raises(ConfigError, match="reserved|Stream's own"):
        load_settings(env_with(tmp_path, STREAM_SCHEMA.replace('name = "my-s3"', 'name = "stream-s3"')))


@pytest.mark.parametrize(("text", "seconds"), [("250ms", 0.25), ("90s", 90), ("15m", 900), ("48h", 172800),
                                                ("14d", 1209600), (5, 5)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


def test_the_example_config_is_valid(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[3] / "config" / "archiver.example.toml"
    monkeypatch.setenv("S3_SECRET_ACCESS_KEY", "example")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "example")
    text = example.read_text().replace("file:/etc/archiver/gcs-service-account.json", "{}")
    copy = tmp_path / "example.toml"
    copy.write_text(text)
    settings = load_settings(BASE_ENV | {"ARCHIVER_CONFIG": str(copy)})
    assert {s.storage_type for s in settings.archive.storages} == {"s3", "gcs", "abs", "local"}


@pytest.mark.parametrize(
    ("storage", "reason"),
    [
        ({"storage_type": "s3", "gcs_credentials": "{}", "aws_s3": {"s3_region": "x"}}, "gcs_* does not belong"),
        ({"storage_type": "abs"}, "needs a [storages.azure_blob] table"),
        ({"storage_type": "abs", "azure_blob": {"abs_account_name": "a", "abs_client_id": "c"}},
         "must be given together"),
        ({"storage_type": "abs", "azure_blob": {"abs_server_side_copy": False}}, "needs abs_account_name"),
        ({"storage_type": "gcs", "gcs_credentials": "{}", "gcs_credentials_file": "/x"}, "not both"),
        ({"storage_type": "local", "options": {"a": 1}}, "options does not belong"),
        ({"storage_type": "s3", "aws_s3": {"s3_region": "x", "s3_external_id": "e"}}, "needs s3_role_arn"),
        ({"storage_type": "s3", "aws_s3": {"s3_region": "x", "s3_sse": "DES"}}, "'AES256' or 'aws:kms'"),
        ({"storage_type": "s3", "aws_s3": {"s3_region": "x", "s3_request_checksum": "never"}}, "when_supported"),
        ({"storage_type": "s3", "aws_s3": {"s3_region": "x", "s3_object_lock_days": 30}},
         "s3_object_lock_days needs s3_object_lock_mode"),
        ({"storage_type": "s3", "aws_s3": {"s3_region": "x", "s3_object_lock_mode": "COMPLIANCE"}},
         "s3_object_lock_mode needs s3_object_lock_days"),
        ({"storage_type": "s3", "aws_s3": {"s3_region": "x", "s3_object_lock_mode": "WORM", "s3_object_lock_days": 1}},
         "'GOVERNANCE' or 'COMPLIANCE'"),
        ({"storage_type": "s3", "aws_s3": {"s3_region": "x", "s3_object_lock_mode": "GOVERNANCE",
                                           "s3_object_lock_days": 0}}, "must be at least 1, got "),
        ({"storage_type": "s3", "aws_s3": {"s3_region": "x", "s3_object_lock_mode": "GOVERNANCE",
                                           "s3_object_lock_days": "7"}}, "expected a whole number, got a string"),
        ({"storage_type": "s3", "aws_s3": {"s3_region": "x"}, "gcs_retention_days": 7}, "gcs_* does not belong"),
        ({"storage_type": "s3", "aws_s3": {"s3_region": "x"}, "gcs_temporary_hold": True}, "gcs_* does not belong"),
        ({"storage_type": "abs", "azure_blob": {"abs_account_name": "a"}, "gcs_kms_key_name": "k"},
         "gcs_* does not belong"),
        ({"storage_type": "local", "gcs_event_based_hold": True}, "gcs_* does not belong"),
        ({"storage_type": "gcs", "gcs_retention_days": 7}, "gcs_retention_days needs gcs_retention_mode"),
        ({"storage_type": "gcs", "gcs_retention_mode": "Locked"}, "gcs_retention_mode needs gcs_retention_days"),
        ({"storage_type": "gcs", "gcs_retention_mode": "locked", "gcs_retention_days": 7}, "'Unlocked' or 'Locked'"),
        ({"storage_type": "gcs", "gcs_retention_mode": "Locked", "gcs_retention_days": -1}, "must be at least 1, got "),
        ({"storage_type": "abs", "azure_blob": {"abs_account_name": "a", "abs_immutability_mode": "Unlocked"}},
         "abs_immutability_mode needs abs_immutability_days"),
        ({"storage_type": "abs", "azure_blob": {"abs_account_name": "a", "abs_immutability_days": 3}},
         "abs_immutability_days needs abs_immutability_mode"),
        ({"storage_type": "abs", "azure_blob": {"abs_account_name": "a", "s3_legal_hold": True}},
         "unknown key 's3_legal_hold'"),
        ({"storage_type": "s3", "aws_s3": {"s3_region": "x", "abs_legal_hold": True}}, "unknown key 'abs_legal_hold'"),
    ],
)
def test_provider_keys_are_checked(tmp_path: Path, storage: dict[str, object], reason: str) -> None:
    import tomli_w  # noqa: PLC0415

    config = {"default_storage": "x", "storages": [{"name": "x", "bucket": "b", **storage}]}
    with pytest.raises(ConfigError, match=re.escape(reason)):
        load_settings(env_with(tmp_path, tomli_w.dumps(config)))


def test_write_once_and_encryption_keys_are_read_per_storage(tmp_path: Path) -> None:
    """Each store's retention, holds and encryption key, where its own keys live."""
    import tomli_w  # noqa: PLC0415

    storages = [
        {"name": "s3", "storage_type": "s3", "bucket": "b", "aws_s3": {
            "s3_region": "x", "s3_object_lock_mode": "COMPLIANCE", "s3_object_lock_days": 2555, "s3_legal_hold": True,
            "s3_sse": "aws:kms", "s3_sse_kms_key_id": "arn:aws:kms:eu-west-1:1:key/k"}},
        {"name": "gcs", "storage_type": "gcs", "bucket": "b", "gcs_retention_days": 1825,
         "gcs_retention_mode": "Locked", "gcs_event_based_hold": True, "gcs_temporary_hold": True,
         "gcs_kms_key_name": "projects/p/locations/l/keyRings/r/cryptoKeys/k"},
        {"name": "abs", "storage_type": "abs", "bucket": "c", "azure_blob": {
            "abs_account_name": "a", "abs_immutability_days": 365, "abs_immutability_mode": "Unlocked",
            "abs_legal_hold": True, "abs_encryption_scope": "cmk"}},
    ]
    archive = load_settings(env_with(tmp_path, tomli_w.dumps({"default_storage": "s3", "storages": storages}))).archive
    s3, gcs, abs_ = (archive.storage(name) for name in ("s3", "gcs", "abs"))
    assert s3.aws_s3 is not None and (s3.aws_s3.s3_object_lock_mode, s3.aws_s3.s3_object_lock_days,
                                      s3.aws_s3.s3_legal_hold) == ("COMPLIANCE", 2555, True)
    assert (gcs.gcs_retention_days, gcs.gcs_retention_mode, gcs.gcs_event_based_hold, gcs.gcs_temporary_hold) == \
        (1825, "Locked", True, True)
    assert abs_.azure_blob is not None and abs_.azure_blob.abs_encryption_scope == "cmk"
    assert (abs_.azure_blob.abs_immutability_days, abs_.azure_blob.abs_immutability_mode) == (365, "Unlocked")


def test_call_types_may_fan_out_and_stream_s3_stays_alone(tmp_path: Path) -> None:
    storages = [{"name": n, "storage_type": "local", "bucket": n} for n in ("a", "b")]
    import tomli_w  # noqa: PLC0415

    ok = {"default_storage": ["a", "b"], "call_types": {"x": ["b"], "y": "stream-s3"}, "storages": storages}
    settings = load_settings(env_with(tmp_path, tomli_w.dumps(ok)))
    assert settings.archive.route_names("x") == ["b"] and settings.archive.default_names() == ["a", "b"]
    for bad, reason in [({"default_storage": ["a", "a"]}, "distinct"), ({"default_storage": []}, "non-empty"),
                        ({"call_types": {"x": ["a", "stream-s3"]}}, "cannot be combined")]:
        with pytest.raises(ConfigError, match=reason):
            load_settings(env_with(tmp_path, tomli_w.dumps({**ok, **bad})))



def test_without_stream_credentials_the_ledger_settings_load(tmp_path: Path) -> None:
    """require_stream=False reads the configuration and REDIS_URL without STREAM_API_KEY/SECRET;
    the default still requires them, so code that signs never runs without a secret."""
    path = tmp_path / "archiver.toml"
    path.write_text('[[storages]]\nname = "disk"\nstorage_type = "local"\nbucket = "/tmp/a"\n')
    settings = load_settings({"REDIS_URL": "redis://r:6379/2", "ARCHIVER_CONFIG": str(path)}, require_stream=False)
    assert settings.env.redis_url == "redis://r:6379/2"
    assert settings.archive.storage("disk").bucket == "/tmp/a"
    assert not hasattr(settings.env, "stream_api_secret")
    with pytest.raises(ConfigError, match="STREAM_API_KEY, STREAM_API_SECRET"):
        load_settings({"REDIS_URL": "redis://r:6379/2"})


def test_download_hosts_from_the_environment_are_added_to_the_files(tmp_path: Path) -> None:
    """ARCHIVER_DOWNLOAD_HOSTS (comma-separated) adds patterns; the file's own (or the default) stay."""
    extra = {"ARCHIVER_DOWNLOAD_HOSTS": " 127.0.0.1:8080, Files.Example.com ,"}
    assert load_settings(BASE_ENV | extra).archive.download_hosts == (
        "*.stream-io-cdn.com", "127.0.0.1:8080", "files.example.com")
    toml = 'download_hosts = ["cdn.example.org"]\n'
    assert load_settings(env_with(tmp_path, toml) | extra).archive.download_hosts == (
        "cdn.example.org", "127.0.0.1:8080", "files.example.com")
    assert load_settings(env_with(tmp_path, toml)).archive.download_hosts == ("cdn.example.org",)


def test_kinds_default_to_recordings_and_transcriptions_and_take_frame_recordings(tmp_path: Path) -> None:
    assert load_settings(BASE_ENV).archive.kinds == ("recording", "transcription")
    toml = 'kinds = ["frame_recording", "recording", "frame_recording"]'
    assert load_settings(env_with(tmp_path, toml)).archive.kinds == ("frame_recording", "recording")


def test_a_lone_storage_is_the_default(tmp_path: Path) -> None:
    """One [[storages]] and no default_storage: files go there (not to a storage named 'local')."""
    toml = '[[storages]]\nname = "disk"\nstorage_type = "local"\nbucket = "/tmp/a"\n'
    settings = load_settings(env_with(tmp_path, toml))
    assert settings.archive.default_names() == ["disk"]
    assert settings.archive.route_names("livestream") == ["disk"]


def test_several_storages_without_a_default_name_them_and_ask_for_default_storage(tmp_path: Path) -> None:
    """Several storages, none named 'local', no default_storage: an error naming them."""
    toml = "".join(f'[[storages]]\nname = "{n}"\nstorage_type = "local"\nbucket = "/tmp/{n}"\n' for n in "ab")
    with pytest.raises(ConfigError, match=r"default_storage is not set, and 2 storages are declared \(a, b\): "
                                          r"set default_storage"):
        load_settings(env_with(tmp_path, toml))


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('defualt_storage = "local"', "(top level): unknown key 'defualt_storage': did you mean 'default_storage'?"),
        ('[transfer]\npart_sise = "8MiB"', "transfer: unknown key 'part_sise': did you mean 'part_size'?"),
        ('zzz = 1', "unknown key 'zzz' (known keys: api_share, at_risk_margin, audit_deep, audit_every, "
                    "audit_log_every, audit_log_storage, audit_rate, call_cache_ttl,"),
        ('download_hosts = "*.example.com"',
         'download_hosts: expected a list of host patterns such as ["*.example.com"], got a string'),
        ("default_storage = 5", 'default_storage: expected a storage name, or a list of names such as '
                                '["s3", "local"], got 5'),
        ('[call_types]\nlive = true', "call_types.live: expected a storage name, or a list of names"),
        ('call_types = ["x"]', "call_types: expected a table of call type = storage name(s)"),
        ('[transfer]\nparts_in_flight = "four"', "transfer.parts_in_flight: expected a whole number, got a string"),
        ("[transfer]\nparts_in_flight = 0", "transfer.parts_in_flight: must be at least 1, got 0"),
        ('[transfer]\npart_size = "lots"', 'transfer.part_size: expected a size such as "8MiB"'),
        ('[[storages]]\nname = "a"\nstorage_type = "local"', "storages[0]: missing required key 'bucket'"),
        ('delete_from_stream = "maybe"', "delete_from_stream: expected true or false, got a string"),
        ('kinds = ["recordings"]', "kinds: unknown kind 'recordings': did you mean 'recording'? (known: recording, "
                                   "transcription, frame_recording, stats_report)"),
        ('kinds = ["frame_recording", "video"]', "kinds: unknown kind 'video' (known: recording,"),
        ('kinds = "recording"', 'kinds: expected a list of kinds such as ["recording", "transcription"], got a string'),
        ("kinds = []", "kinds: must name at least one kind"),
    ],
)
def test_configuration_errors_are_in_plain_words(tmp_path: Path, toml: str, expected: str) -> None:
    """Unknown keys get "did you mean", type errors say what was expected and what was given, and
    pydantic's own wording ("Extra inputs are not permitted", "Input should be …") never shows."""
    with pytest.raises(ConfigError) as caught:
        load_settings(env_with(tmp_path, toml))
    message = str(caught.value)
    assert expected in message
    assert "Input should" not in message and "Extra inputs" not in message


def test_environment_errors_name_the_variable() -> None:
    """An environment variable's fault names the variable as it is written."""
    with pytest.raises(ConfigError, match=r"ARCHIVER_LOG_FORMAT: expected 'auto', 'json' or 'console', got 'xml'"):
        load_settings(BASE_ENV | {"ARCHIVER_LOG_FORMAT": "xml"})


def test_a_short_signing_secret_gets_advice_once_not_a_warning_per_call() -> None:
    """A STREAM_API_SECRET under 32 bytes gets one sentence of advice (said at start); a long one none."""
    advice = load_settings(BASE_ENV).env.signing_secret_advice()
    assert advice is not None and "17 bytes" in advice and "Stream accepts it" in advice
    assert load_settings(BASE_ENV | {"STREAM_API_SECRET": "x" * 32}).env.signing_secret_advice() is None


def test_public_url_and_max_link_ttl(tmp_path: Path) -> None:
    """Unset public_url and an hour by default; public_url loses its trailing slash and keeps a path."""
    archive = load_settings(BASE_ENV).archive
    assert archive.public_url is None and archive.max_link_ttl == parse_duration("1h")
    toml = 'public_url = "https://archiver.example.com/ops/"\nmax_link_ttl = "7d"\n'
    archive = load_settings(env_with(tmp_path, toml)).archive
    assert archive.public_url == "https://archiver.example.com/ops" and archive.max_link_ttl == parse_duration("7d")


@pytest.mark.parametrize(("toml", "words"), [
    ('public_url = "archiver.example.com"', "http(s) URL with a host"),
    ('public_url = "ftp://archiver.example.com"', "http(s) URL with a host"),
    ('public_url = "https://archiver.example.com/?x=1"', "no query string"),
    ('public_url = "https://user:pw@archiver.example.com"', "no query string, fragment or user name"),
    ('max_link_ttl = "8d"', "between 1s and 7d"),
    ('max_link_ttl = "0s"', "between 1s and 7d"),
])
def test_bad_link_settings_are_refused(tmp_path: Path, toml: str, words: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_settings(env_with(tmp_path, toml))
