"""The web process never imports TensorFlow (nor Keras, nor LiteRT): only workers load models."""

import subprocess
import sys

import pytest

from hematovision.settings import BASE_DIR


@pytest.mark.slow
def test_importing_the_wsgi_app_and_every_view_loads_no_model_runtime():
    code = (
        "import sys, django; import hematovision.wsgi; from django.urls import get_resolver; "
        "get_resolver().url_patterns; import api.urls, cases.urls; "
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'ai_edge_litert', 'torch') if m in sys.modules); "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
