import os

import pytest


@pytest.fixture(scope="module", autouse=True)
def offline_hf_home(tmp_path_factory):
    """No hub, no telemetry, and a throwaway HF_HOME (see reference/environment.md)."""
    saved = {k: os.environ.get(k) for k in ("HF_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
                                            "HF_HUB_DISABLE_TELEMETRY")}
    os.environ.update(HF_HOME=str(tmp_path_factory.mktemp("hf-home")), HF_HUB_OFFLINE="1",
                      HF_DATASETS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
