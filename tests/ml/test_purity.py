"""The ML core imports no web, database or queue framework."""

import subprocess
import sys


def test_importing_the_ml_core_pulls_in_no_framework():
    code = (
        "import sys, service.ml.tabular, service.ml.preprocessing, service.ml.network, "
        "service.ml.training, service.ml.inference, service.ml.pipeline\n"
        "bad = [m for m in ('flask', 'sqlalchemy', 'celery', 'marshmallow') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
