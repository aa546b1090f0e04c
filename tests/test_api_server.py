"""`trainserve api` under gthread workers: one request at a time per process, event
streams beside them."""

import threading
import time

from service.cli import _OneRequestAtATime


def test_requests_take_turns_and_event_streams_do_not_wait():
    running, most = [0], [0]
    guard = threading.Lock()

    def app(environ, start_response):
        with guard:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with guard:
            running[0] -= 1
        return [environ["PATH_INFO"].encode()]

    wsgi = _OneRequestAtATime(app)
    threads = [
        threading.Thread(target=wsgi, args=({"PATH_INFO": "/v1/models/m/predict"}, None))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1

    most[0] = 0
    wsgi.lock.acquire()  # a predict is running
    try:
        started = time.monotonic()
        assert wsgi({"PATH_INFO": "/v1/jobs/j/events"}, None) == [b"/v1/jobs/j/events"]
        assert time.monotonic() - started < 1.0
    finally:
        wsgi.lock.release()
