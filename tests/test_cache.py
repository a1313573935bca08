"""fastbp's cache locators: a change to any kernel source recompiles every cached fastbp function,
not only those in the changed file (Numba on its own looks at a function's own file)."""

import os
import tempfile

import numba
import pytest

from fastbp import config
from fastbp._kernels import cache
from fastbp._kernels.cpu import blas

needs_cache = pytest.mark.skipif(
    numba.config.DISABLE_JIT or not config.CACHE, reason="needs the JIT and the compile cache"
)


@needs_cache
def test_fastbp_and_its_tests_get_the_kernel_sources_in_their_stamp():
    for function in (blas.gemm_nn, _probe):
        locator = function._cache._impl._locator
        assert isinstance(locator, (cache.InTreeLocator, cache.UserProvidedLocator))
        own, kernels = locator.get_source_stamp()
        assert kernels == cache.kernel_sources_stamp()


@numba.njit(cache=True)
def _probe(x):
    return x + 1


def test_code_outside_fastbp_keeps_numbas_locators(tmp_path):
    elsewhere = tmp_path / "user_code.py"
    elsewhere.write_text("def f():\n    return 1\n")
    namespace = {}
    exec(compile(elsewhere.read_text(), str(elsewhere), "exec"), namespace)
    assert cache.InTreeLocator.from_function(namespace["f"], str(elsewhere)) is None
    assert cache.UserProvidedLocator.from_function(namespace["f"], str(elsewhere)) is None


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    kernels = tmp_path / "_kernels" / "cpu"
    kernels.mkdir(parents=True)
    (kernels / "a.py").write_text("x = 1\n")
    (tmp_path / "sklearn.py").write_text("")
    (tmp_path / "config.py").write_text("")
    (tmp_path / "cli.py").write_text("")
    monkeypatch.setattr(cache, "PACKAGE", str(tmp_path))
    cache.kernel_sources_stamp.cache_clear()
    yield tmp_path
    cache.kernel_sources_stamp.cache_clear()


def test_any_kernel_edit_changes_the_stamp_and_other_files_do_not(fake_package):
    before = cache.kernel_sources_stamp()
    assert len(cache.kernel_sources()) == 3
    (fake_package / "cli.py").write_text("print('not a kernel')\n")
    cache.kernel_sources_stamp.cache_clear()
    assert cache.kernel_sources_stamp() == before
    for edited in ("_kernels/cpu/a.py", "sklearn.py", "config.py"):
        path = fake_package / edited
        path.write_text(path.read_text() + "# edited\n")
        cache.kernel_sources_stamp.cache_clear()
        after = cache.kernel_sources_stamp()
        assert after != before, edited
        before = after


def test_a_cache_folder_is_proven_writable_once_and_made_again_when_gone(tmp_path, monkeypatch):
    probes = []
    make_file = tempfile.TemporaryFile
    monkeypatch.setattr(cache.tempfile, "TemporaryFile", lambda dir: probes.append(dir) or make_file(dir=dir))
    first = cache.InTreeLocator(_probe, str(tmp_path / "a.py"))
    second = cache.InTreeLocator(_probe, str(tmp_path / "b.py"))  # same __pycache__ folder
    first.ensure_cache_path()
    second.ensure_cache_path()
    folder = tmp_path / "__pycache__"
    assert probes == [str(folder)] and folder.is_dir()
    folder.rmdir()  # Numba asks again before each save: the folder comes back
    first.ensure_cache_path()
    assert folder.is_dir() and len(probes) == 1


def test_an_unusable_cache_folder_is_refused_as_numba_expects(tmp_path):
    (tmp_path / "__pycache__").write_text("a file where the folder should be")
    with pytest.raises(OSError):
        cache.InTreeLocator(_probe, str(tmp_path / "a.py")).ensure_cache_path()
    source = tmp_path / "a.py"
    source.write_text("")
    with pytest.MonkeyPatch.context() as patch:  # a fastbp file: from_function then gives no locator
        patch.setattr(cache, "_covered", lambda py_file: True)
        assert cache.InTreeLocator.from_function(_probe, str(source)) is None


def test_the_locators_come_first_once():
    cache.install()
    cache.install()
    locators = numba.core.caching.CacheImpl._locator_classes
    assert locators[:2] == [cache.UserProvidedLocator, cache.InTreeLocator]
    assert locators.count(cache.InTreeLocator) == 1
    assert os.path.isdir(cache.PACKAGE)


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="needs the JIT")
def test_kernels_are_not_compiled_again_for_constant_arguments():
    """Kernels hand flags to other kernels as plain values (jit.TRUE / FALSE / ZERO), never as
    constants: a literal True is a type of its own to Numba, which then compiled the whole forward
    pass a second time beside the copy Python's calls use (fit, then predict)."""
    import numpy as np

    import fastbp as fb
    from fastbp._kernels.cpu import blas, online, steps

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    net = fb.Sequential(fb.Dense(5, 8), fb.ReLU(), fb.Dense(8, 3), loss="cross_entropy", seed=0, l2=0.01)
    net.fit(X, y, epochs=1, batch_size=8, verbose=0)  # mini-batches, with the penalty's entry
    net.fit(X, y, epochs=1, batch_size=1, optimizer="sgd", verbose=0)  # the online kernels
    net.l2 = 0.0
    net.fit(X, y, epochs=1, batch_size=8, optimizer="sgd", verbose=0)  # the fused SGD pass's entry
    net.predict(X)
    kernels = [
        steps.forward,
        steps.backward,
        steps.backward_sgd,
        steps.weight_penalty,
        steps._layer_delta,
        online.sample_backward,
    ]
    if not blas.accumulates():  # no fused SGD pass without a BLAS that adds into C
        kernels.remove(steps.backward_sgd)
    for kernel in kernels:
        # What this process compiled, and what the cache holds (a kernel that came from the cache
        # inside its caller's machine code has no signatures of its own here).
        signatures = list(kernel.signatures) + [key[0] for key in _cache_index(kernel)]
        assert signatures, kernel  # the fits above ran it
        literal = [sig for sig in signatures if any(isinstance(t, numba.types.Literal) for t in sig)]
        assert not literal, (kernel, literal)


def _cache_index(kernel) -> dict:
    """The kernel's live cache entries, {(signature, ...): data file name}, through Numba's own
    reader (it drops an index whose source stamp is stale; old data files may stay beside it)."""
    return kernel._cache._cache_file._load_index()


# Numba library code a training step never runs but once cost seconds of every cold compile: the
# error message of an array-to-array slice assignment (str/repr of shapes, string joins) and
# np.dot with its layouts, for a fallback branch (blas._loop_gemm replaced it).
_COLD_COMPILE_WEIGHT = (b"raise_with_shape_context", b"cpython7unicode", b"linalg5dot_")


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="needs the JIT")
def test_the_training_kernels_carry_no_string_or_np_dot_code():
    """Read in the machine code the cache holds (Numba will not show the IR of cached code): the
    symbol names are plain bytes in its data files."""
    import numpy as np

    import fastbp as fb
    from fastbp._kernels.cpu import steps, train

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    net = fb.Sequential(fb.Dense(5, 8), fb.Tanh(), fb.Dense(8, 3), loss="cross_entropy", seed=0)
    net.fit(X, y, epochs=1, batch_size=8, verbose=0)
    net.fit(X, y, epochs=1, batch_size=1, optimizer="sgd", verbose=0)
    net.predict(X)
    for kernel in (train.batch_steps, train.online_steps, steps.forward):
        data = _cache_index(kernel).values()
        assert data, kernel
        for name in data:
            path = os.path.join(kernel._cache._cache_file._cache_path, name)
            with open(path, "rb") as f:
                code = f.read()
            assert kernel.py_func.__name__.encode() in code, path  # the symbols are readable
            found = [name for name in _COLD_COMPILE_WEIGHT if name in code]
            assert not found, (path, found)


_WILL_COMPILE_SCRIPT = """
import sys
sys.path.insert(0, {folder!r})
import numpy as np
from fastbp._kernels.cache import will_compile
from tiny_kernel import double
x = np.arange(3.0)
before = will_compile(double, (x,))
double(x)
print(before, will_compile(double, (x,)), will_compile(double, (x.astype(np.float32),)))
"""


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="needs the JIT")
def test_will_compile_reads_memory_and_the_cache_index(tmp_path):
    """True before the first call of a new function, False once compiled, False in a second process
    that finds it in the cache, True again for argument types never compiled."""
    import subprocess
    import sys

    (tmp_path / "tiny_kernel.py").write_text(
        "import numba\n\n@numba.njit(cache=True)\ndef double(x):\n    return x * 2\n"
    )
    script = _WILL_COMPILE_SCRIPT.format(folder=str(tmp_path))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    runs = [
        subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
        for _ in range(2)
    ]
    assert [run.returncode for run in runs] == [0, 0], [run.stderr for run in runs]
    assert runs[0].stdout.split() == ["True", "False", "True"]
    assert runs[1].stdout.split() == ["False", "False", "True"]


def _load_as(name, path):
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@needs_cache
def test_a_bench_script_loaded_under_two_names_keeps_a_cache_for_each():
    # The tests load bench scripts as fastbp_bench_<name>; `python bench/<name>.py` runs them as
    # __main__. Numba's cached code names the module it was compiled in and imports it to load, so
    # a cache shared between the two names failed with ModuleNotFoundError (seen: batch1_floor.py
    # after the test suite). Here the first name is gone from sys.modules when the second loads.
    import sys

    import numpy as np

    script = os.path.join(cache._ROOT, "bench", "batch1_floor.py")
    W, x, d = np.zeros((2, 3), np.float32), np.ones(2, np.float32), np.ones(3, np.float32)
    first = _load_as("fastbp_cache_test_first_name", script)
    first.rank1_updates(W, x, d, np.float32(1), 1)  # compiled or loaded, cached under this name
    del sys.modules["fastbp_cache_test_first_name"]
    second = _load_as("fastbp_cache_test_second_name", script)
    try:
        second.rank1_updates(W, x, d, np.float32(1), 1)
    finally:
        del sys.modules["fastbp_cache_test_second_name"]
    np.testing.assert_array_equal(W, np.full((2, 3), 2, np.float32))
    locators = [m.rank1_updates._cache._impl._locator for m in (first, second)]
    assert locators[0].get_disambiguator() != locators[1].get_disambiguator()
    # fastbp's own kernels keep Numba's file names (one module name each).
    assert blas.gemm_nn._cache._impl._locator.get_disambiguator().isdigit()
