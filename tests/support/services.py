"""PostgreSQL and Redis of this machine, over real connections.

A service that is down fails the test with the command that starts it; nothing skips.
"""

from __future__ import annotations

import uuid

import pytest

from tests.support.servers import POSTGRES_URL, REDIS_URL, create_database, drop_database


@pytest.fixture
def postgres_url():
    """A fresh, empty PostgreSQL database for this test, dropped afterwards."""
    try:
        url = create_database("trainserve_test_")
    except Exception as exc:  # noqa: BLE001
        pytest.fail(
            f"PostgreSQL at {POSTGRES_URL} is not reachable ({type(exc).__name__}: {exc}). "
            "Start it: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        )
    yield url
    drop_database(url)


@pytest.fixture
def redis_url():
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(
            f"Redis at {REDIS_URL} is not reachable ({exc}). Start it: redis-server --daemonize "
            'yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no'
        )
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3-API server (moto's standalone server) on a free local port, started for
    the test session and stopped after it."""
    import socket
    import subprocess
    import sys
    import time

    import requests

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(endpoint, timeout=1)
            break
        except requests.ConnectionError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail("moto's S3 server did not start (pip install -e '.[dev]')")
            time.sleep(0.2)
    yield endpoint
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def s3_url(s3_endpoint, monkeypatch):
    """``s3://<a fresh bucket>/prefix`` on the test S3 server, with its credentials set."""
    import requests

    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    bucket = f"trainserve-{uuid.uuid4().hex[:12]}"
    assert requests.put(f"{s3_endpoint}/{bucket}", timeout=10).status_code == 200
    return f"s3://{bucket}/blobs"
