"""fastbp's cache locators: a change to any kernel source recompiles every cached fastbp function,
not only those in the changed file (Numba on its own looks at a function's own file)."""

import os

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


def test_the_locators_come_first_once():
    cache.install()
    cache.install()
    locators = numba.core.caching.CacheImpl._locator_classes
    assert locators[:2] == [cache.UserProvidedLocator, cache.InTreeLocator]
    assert locators.count(cache.InTreeLocator) == 1
    assert os.path.isdir(cache.PACKAGE)
