import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

SESSION_OF = {"processes": "tensorflow", "once": "torch", "torch_only": "torch"}


def pytest_collection_modifyitems(config, items):
    """Tests marked `processes` start their own processes (`kgates tune` killed and
    resumed, a chief and workers; every backend side by side): they run `kgates` as
    a user does, on the default backend, so in the TensorFlow session only. Tests
    marked `once` run whole scripts or searches whose parts are tested on every
    backend elsewhere: in the torch session only, the fastest at their small models
    (about a quarter of TensorFlow's time) and a backend the studies run on GPUs.
    Tests marked `torch_only` test torch's own code: in the torch session only."""
    backend = keras.backend.backend()
    deselected = [
        item
        for item in items
        if any(item.get_closest_marker(mark) and backend != ran for mark, ran in SESSION_OF.items())
    ]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]


@pytest.fixture(scope="session", autouse=True)
def _shared_jax_compilation_cache(tmp_path_factory, worker_id):
    """Tests build many models of the same shapes, and JAX compiles each one anew:
    the workers of a run share a compilation cache in the run's temporary folder."""
    if keras.backend.backend() != "jax":
        return
    import jax

    root = tmp_path_factory.getbasetemp()
    folder = root if worker_id == "master" else root.parent  # workers: <run>/popen-gwN
    jax.config.update("jax_compilation_cache_dir", str(folder / "jax-compilation-cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")
    # Keras's own state only: its default `gc.collect()` costs about a second a
    # test on JAX, and Python collects the old models' cycles by itself.
    keras.backend.clear_session(free_memory=False)
