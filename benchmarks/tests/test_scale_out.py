"""The scale-out script's short run: a rolling restart behind HAProxy with 0 failed requests, and
two servers on one Redis where a SIGKILL of one costs the other nothing.

About 35 s; needs haproxy and redis-server (``benchmarks/install.sh``), fails without them.
"""

from benchmarks.scale_out import QUICK, rolling_restart, shared_redis


def test_rolling_restart_fails_no_request(tmp_path):
    """SIGTERM and restart each server in turn under load: every request answers 200."""
    result = rolling_restart(QUICK, tmp_path)
    assert result.requests > 100
    assert result.failed == 0, result.failures
    # Each server really left and came back, and took traffic again afterwards.
    assert set(result.drain_s) == {"s1", "s2"}
    assert all(count > 0 for count in result.served_after_restart.values())
    assert result.p99_ms > 0


def test_shared_redis_survives_a_sigkill_of_the_other(tmp_path):
    """SIGKILL one of two servers on one Redis: the other fails nothing and keeps its keys."""
    result = shared_redis(QUICK, tmp_path)
    assert result.survivor_requests > 20
    assert result.survivor_failed == 0, result.failures
    assert result.killed_requests_before_kill > 0
    # Deletions were seen and traced (the check is live), and none crossed servers.
    assert result.deletions_traced_to_owner > 0
    assert result.foreign_deletions == []
    # wait_keys_gone raised otherwise: the killed server's keys expired within TTL + 5 s.
    assert result.killed_keys_gone_after_s <= QUICK.redis_ttl_ms / 1e3 + 5.0
    assert result.restarted_served
