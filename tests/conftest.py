import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

ONCE = ("processes", "once")


def pytest_collection_modifyitems(config, items):
    """Tests marked `processes` start their own processes (`kgates tune` killed and
    resumed, a chief and workers; every backend side by side): what they check does
    not depend on the session's backend. Tests marked `once` run whole scripts or
    searches whose parts are tested on every backend elsewhere. Each costs tens of
    seconds, so both run in the TensorFlow session only."""
    if keras.backend.backend() == "tensorflow":
        return
    deselected = [item for item in items if any(m in item.keywords for m in ONCE)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")
    keras.backend.clear_session()
