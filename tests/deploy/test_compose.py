"""deploy/docker-compose.yml: Redis persistent and never evicting, every role health-checked and restarted."""

from __future__ import annotations

from pathlib import Path

from config.settings import load_archive_config
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
