import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Tests marked `processes` start their own processes (`kgates tune` killed and
    resumed, a chief and workers; every backend side by side): what they check does
    not depend on the session's backend, and each costs tens of seconds, so they run
    in the TensorFlow session only."""
    if keras.backend.backend() == "tensorflow":
        return
    deselected = [item for item in items if "processes" in item.keywords]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if "processes" not in item.keywords]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")
    keras.backend.clear_session()
