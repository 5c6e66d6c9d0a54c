"""Dask settings of the clusters gen5dask starts: batch defaults, user overrides, workers."""

import dask
import pytest

from gen5dask.cluster import BATCH_DASK_CONFIG, dask_client, dask_env, dask_settings, worker_env
from gen5dask.config.cluster import ClusterConfig

PROFILE = "distributed.worker.profile.enabled"


def test_user_settings_override_the_batch_defaults():
    cfg = ClusterConfig(dask_config={PROFILE: True, "distributed.comm.timeouts.connect": "60s"})
    got = dask_settings(cfg)
    assert got[PROFILE] is True and got["distributed.comm.timeouts.connect"] == "60s"
    for key in set(BATCH_DASK_CONFIG) - {PROFILE}:
        assert got[key] == BATCH_DASK_CONFIG[key]
    assert dask_settings(ClusterConfig()) == BATCH_DASK_CONFIG


def test_environment_round_trips_through_dask():
    cfg = ClusterConfig(dask_config={"distributed.worker.connections.outgoing": 25})
    settings = dask_settings(cfg)
    env = dask_env(settings)
    assert env["DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED"] == "False"
    assert env["DASK_DISTRIBUTED__WORKER__MEMORY__MONITOR_INTERVAL"] == "1s"
    parsed = dask.config.collect_env(env)
    for key, value in settings.items():
        assert dask.config.get(key, config=parsed) == value, key
    # worker_env carries them; an explicit worker_env entry still wins
    cfg = ClusterConfig(worker_env={"DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL": "500ms"})
    env = worker_env(cfg)
    assert env["DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL"] == "500ms"
    assert env["DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED"] == "False"


@pytest.mark.parametrize("override", [None, True])
def test_local_cluster_workers_run_with_the_settings(override):
    extra = {} if override is None else {PROFILE: override}
    cfg = ClusterConfig(kind="local", n_workers=1, dashboard_address=None, memory_limit="2GiB",
                        dask_config=extra)
    with dask_client(cfg, quiet=True) as client:
        got = client.run(lambda: (dask.config.get(PROFILE),
                                  dask.config.get("distributed.admin.tick.interval")))
        sched = client.run_on_scheduler(lambda: dask.config.get(PROFILE))
    want = False if override is None else override
    assert list(got.values()) == [(want, "1s")]
    assert sched == want
    # the settings do not outlive the client
    assert dask.config.get(PROFILE) is True
