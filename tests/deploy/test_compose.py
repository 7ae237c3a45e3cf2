"""deploy/docker-compose.yml: Redis persistent and never evicting, every role health-checked and restarted."""

from __future__ import annotations

from pathlib import Path

from config.archive import load_archive_config
from tests.deploy.files import DEPLOY, compose_services, duration_seconds

ROLES = ("web", "worker", "scheduler")


def test_services_have_health_checks_and_restart_policies() -> None:
    """redis, web, worker and scheduler each have a health check and restart after a crash."""
    services = compose_services()
    assert {"redis", *ROLES} <= set(services)
    for name in ("redis", *ROLES):
        assert services[name]["healthcheck"]["test"], name
        assert services[name]["restart"] in ("always", "unless-stopped", "on-failure"), name


def test_redis_persists_with_aof_and_never_evicts() -> None:
    """Redis runs with --appendonly yes, an fsync policy, noeviction, and its data on a volume."""
    redis = compose_services()["redis"]
    command = redis["command"]
    args = dict(zip(command[1::2], command[2::2], strict=True))
    assert command[0] == "redis-server"
    assert args["--appendonly"] == "yes"
    assert args["--appendfsync"] in ("always", "everysec")
    assert args["--maxmemory-policy"] == "noeviction"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])


def test_roles_wait_for_redis_and_read_the_mounted_configuration() -> None:
    """Each role waits for a healthy Redis, reads archiver.env, and ARCHIVER_CONFIG is a mounted file
    that is a valid configuration."""
    for name in ROLES:
        service = compose_services()[name]
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name
        assert service["env_file"] and (DEPLOY / "archiver.env.example").is_file()
        assert service["environment"]["REDIS_URL"].startswith("redis://redis:")
        mounts = {target: source for source, target, *_ in (v.split(":") for v in service["volumes"])}
        config = service["environment"]["ARCHIVER_CONFIG"]
        assert config in mounts, f"{name}: ARCHIVER_CONFIG {config} is not mounted"
        load_archive_config(DEPLOY / Path(mounts[config]))


def test_exactly_one_scheduler() -> None:
    """The scheduler is not scaled beyond one."""
    scheduler = compose_services()["scheduler"]
    assert scheduler.get("deploy", {}).get("replicas", 1) == 1
    assert "scale" not in scheduler


def test_worker_has_time_to_finish_or_hand_back_a_transfer() -> None:
    """The worker's stop grace period is at least 5 minutes; the others stop well within theirs."""
    services = compose_services()
    assert duration_seconds(services["worker"]["stop_grace_period"]) >= 300
    assert duration_seconds(services["web"]["stop_grace_period"]) > 20  # uvicorn's own graceful timeout


def test_web_is_published_on_loopback_8000() -> None:
    """The receiver is published on 127.0.0.1:8000 only (the HTTPS proxy in front of it relies on it)."""
    assert compose_services()["web"]["ports"] == ["127.0.0.1:8000:8000"]


def test_worker_check_names_the_node_by_the_hostname_command() -> None:
    """The worker's check pings celery@$(hostname): under podman, which runs checks through `podman
    exec`, HOSTNAME is empty ($$ is Compose's escape for $)."""
    test = compose_services()["worker"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL" and "celery@$$(hostname)" in test[1] and "HOSTNAME" not in test[1]
