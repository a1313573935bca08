"""fastbp.io: bit-exact round trips, resumable optimizer state, strict rejection of bad files."""

import json
import os
import zipfile

import numpy as np
import pytest

import fastbp as fb
from fastbp import io as fio
from fastbp import optim
from fastbp.datasets import spirals


def make_net(dtype=np.float32, loss="cross_entropy", seed=0):
    return fb.Sequential(
        fb.Dense(2, 8),
        fb.Tanh(),
        fb.Dropout(0.1),
        fb.Dense(8, 3),
        loss=loss,
        dtype=dtype,
        seed=seed,
        l2=1e-4,
    )


@pytest.fixture(scope="module")
def data():
    return spirals(96, seed=3)


@pytest.fixture
def saved(tmp_path, data):
    X, y = data
    net = make_net()
    opt = optim.Adam(lr=1e-2)
    net.fit(X, y, epochs=1, batch_size=32, optimizer=opt, verbose=0, seed=0)
    path = tmp_path / "model.npz"
    fio.save(net, path, optimizer=opt)
    return path, net


def read_raw(path):
    with np.load(path, allow_pickle=False) as f:
        return {key: f[key] for key in f.files}


def write_raw(path, arrays):
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


# --- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_gives_identical_predictions(tmp_path, data, dtype):
    X, _ = data
    net = make_net(dtype, loss=fb.Huber(0.5))
    net.params[:] = np.random.default_rng(0).normal(size=net.n_params)
    path = tmp_path / "net.npz"
    net.save(path)
    loaded = fio.load(path)
    assert loaded.get_config() == net.get_config()
    assert loaded.params.dtype == net.params.dtype
    assert loaded.params.tobytes() == net.params.tobytes()
    np.testing.assert_array_equal(loaded.forward(X), net.forward(X))
    # The layer views point into the loaded buffer.
    assert np.shares_memory(loaded.layers[0].W, loaded.params)


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda: optim.Adam(lr=1e-2),
        lambda: optim.NAdam(lr=1e-2, weight_decay=1e-3),
        lambda: optim.SGD(lr=0.05, momentum=0.9, nesterov=True),
        lambda: optim.RMSprop(lr=1e-3, momentum=0.5, centered=True),
    ],
    ids=["adam", "nadam", "sgd-nesterov", "rmsprop-centered"],
)
def test_training_continues_bit_for_bit_after_load(tmp_path, data, make_opt):
    X, y = data
    net, opt = make_net(), make_opt()
    net.fit(X, y, epochs=2, batch_size=32, optimizer=opt, verbose=0, seed=1)
    path = tmp_path / "ckpt.npz"
    fio.save(net, path, optimizer=opt)
    net2, opt2 = fio.load(path, with_optimizer=True)
    assert type(opt2) is type(opt) and repr(opt2) == repr(opt)
    assert opt2.step_count == opt.step_count
    net.fit(X, y, epochs=1, batch_size=32, optimizer=opt, verbose=0, seed=7)
    net2.fit(X, y, epochs=1, batch_size=32, optimizer=opt2, verbose=0, seed=7)
    assert net2.params.tobytes() == net.params.tobytes()
    for key, value in opt.state_dict().items():
        np.testing.assert_array_equal(opt2.state_dict()[key], value)


def test_schedule_lr_must_be_given_again(tmp_path, data):
    X, y = data
    schedule = fb.schedules.step_decay(0.05, step_size=3, gamma=0.5)
    net, opt = make_net(), optim.SGD(lr=schedule, momentum=0.9)
    net.fit(X, y, epochs=1, batch_size=32, optimizer=opt, verbose=0, seed=0)
    path = tmp_path / "sched.npz"
    fio.save(net, path, optimizer=opt)
    assert fio.load(path).params.tobytes() == net.params.tobytes()  # the net alone needs no lr
    with pytest.raises(ValueError, match="schedule step_decay"):
        fio.load(path, with_optimizer=True)
    net2, opt2 = fio.load(path, with_optimizer=True, lr=schedule)
    net.fit(X, y, epochs=1, batch_size=32, optimizer=opt, verbose=0, seed=5)
    net2.fit(X, y, epochs=1, batch_size=32, optimizer=opt2, verbose=0, seed=5)
    assert net2.params.tobytes() == net.params.tobytes()


def test_checkpoint_holds_extra_arrays(tmp_path):
    net = make_net()
    extra = {"classes": np.array(["cat", "dog", "eel"]), "scale": np.arange(3.0)}
    fio.save(net, tmp_path / "m.npz", extra=extra)
    checkpoint = fio.load_checkpoint(tmp_path / "m.npz")
    assert checkpoint.optimizer is None and checkpoint.version == fio.FORMAT_VERSION
    assert sorted(checkpoint.extra) == ["classes", "scale"]
    np.testing.assert_array_equal(checkpoint.extra["classes"], extra["classes"])
    with pytest.raises(ValueError, match="holds no optimizer state"):
        fio.load(tmp_path / "m.npz", with_optimizer=True)


def test_file_is_plain_arrays_under_the_documented_keys(saved):
    path, net = saved
    raw = read_raw(path)
    assert str(raw["format"]) == "fastbp.model" and int(raw["version"]) == 1
    assert json.loads(str(raw["config"])) == net.get_config()
    assert str(raw["optimizer.class"]) == "Adam"
    assert json.loads(str(raw["optimizer.hyper"]))["lr"] == 1e-2
    assert raw["optimizer.state.exp_avg"].shape == (net.n_params,)
    assert all(a.dtype != object for a in raw.values())


# --- atomic writes --------------------------------------------------------------------------------


def test_save_writes_exactly_the_path_and_leaves_no_temp_file(tmp_path):
    fio.save(make_net(), tmp_path / "model")  # no suffix added
    fio.save(make_net(seed=1), tmp_path / "model")  # overwrite in place
    assert os.listdir(tmp_path) == ["model"]
    assert fio.load(tmp_path / "model").params.tobytes() == make_net(seed=1).params.tobytes()


def test_failed_save_keeps_the_old_file_and_leaves_nothing_behind(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    fio.save(make_net(seed=0), path)
    before = path.read_bytes()
    calls = []

    def failing_write(member, array, allow_pickle):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return original(member, array, allow_pickle=allow_pickle)

    original = np.lib.format.write_array
    monkeypatch.setattr(np.lib.format, "write_array", failing_write)
    with pytest.raises(OSError, match="disk full"):
        fio.save(make_net(seed=1), path)
    assert os.listdir(tmp_path) == ["model.npz"]
    assert path.read_bytes() == before


def test_save_rejects_what_a_plain_array_file_cannot_hold(tmp_path):
    net = make_net()
    with pytest.raises(TypeError, match="never pickled"):
        fio.save(net, tmp_path / "m.npz", extra={"obj": np.array([{}, 1], dtype=object)})
    with pytest.raises(ValueError, match="identifiers"):
        fio.save(net, tmp_path / "m.npz", extra={"a/b": np.zeros(1)})
    with pytest.raises(TypeError, match="Sequential"):
        fio.save("not a net", tmp_path / "m.npz")
    with pytest.raises(TypeError, match="optimizer"):
        fio.save(net, tmp_path / "m.npz", optimizer="adam")
    assert os.listdir(tmp_path) == []


# --- rejection of bad files -----------------------------------------------------------------------


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        fio.load(tmp_path / "nope.npz")


class _Bomb:
    triggered = []

    def __reduce__(self):
        return (_Bomb.triggered.append, ("unpickled!",))


def test_object_arrays_are_never_unpickled(tmp_path, saved):
    path, _ = saved
    raw = read_raw(path)
    raw["extra.payload"] = np.array([_Bomb()], dtype=object)
    write_raw(path, raw)
    with pytest.raises(ValueError, match="never unpickles"):
        fio.load(path)
    assert _Bomb.triggered == []


def _plain_zip(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("format", "fastbp.model")


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_params_byte(path):
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("params.npy")
    data = bytearray(path.read_bytes())
    # The local header is 30 bytes, then the name and extra field (lengths at bytes 26 and 28);
    # the member's data follows, and its last bytes are the last parameter.
    start = info.header_offset
    name_len, extra_len = np.frombuffer(bytes(data[start + 26 : start + 30]), "<u2")
    data[start + 30 + int(name_len) + int(extra_len) + info.compress_size - 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _tamper(**changes):
    def apply(path):
        raw = read_raw(path)
        for key, value in changes.items():
            key = key.replace("__", ".")
            if value is None:
                del raw[key]
            else:
                raw[key] = value(raw) if callable(value) else value
        write_raw(path, raw)

    return apply


def _config_with(**fields):
    def value(raw):
        config = json.loads(str(raw["config"]))
        config.update(fields)
        return np.array(json.dumps(config))

    return value


def _wider_first_layer(raw):
    config = json.loads(str(raw["config"]))
    config["layers"][0]["out_features"] = 9
    return np.array(json.dumps(config))


BAD_FILES = {
    "empty": (lambda p: p.write_bytes(b""), "empty"),
    "text": (lambda p: p.write_text("hello, I am a csv\n1,2\n"), "not a fastbp model file"),
    "npy": (
        lambda p: np.save(p.with_suffix(".npy"), np.zeros(3)) or os.replace(p.with_suffix(".npy"), p),
        "single .npy array",
    ),
    "foreign-npz": (
        lambda p: write_raw(p, {"X": np.zeros((3, 2)), "y": np.zeros(3)}),
        "not a fastbp model file .*'X', 'y'",
    ),
    "zip-not-npz": (_plain_zip, "not a .npy array"),
    "truncated": (_truncate, "truncated or corrupt"),
    "flipped-byte": (_flip_params_byte, "truncated or corrupt"),
    "wrong-marker": (_tamper(format=np.array("other.model")), "not a fastbp model file"),
    "newer-version": (_tamper(version=np.array(99)), "format version 99 .* newer fastbp"),
    "bad-version": (_tamper(version=np.array("1")), "format version"),
    "missing-params": (_tamper(params=None), r"missing key\(s\) \['params'\]"),
    "unknown-key": (_tamper(surprise=np.zeros(1)), "unexpected key"),
    "json-syntax": (_tamper(config=np.array('{"layers": [')), "not valid JSON"),
    "config-as-bytes": (
        _tamper(config=lambda r: np.frombuffer(str(r["config"]).encode(), np.uint8)),
        "text scalar",
    ),
    "params-too-short": (
        _tamper(params=np.zeros(10, np.float32)),
        "params has 10 values but the architecture needs 51",
    ),
    "params-2d": (_tamper(params=lambda r: r["params"].reshape(1, -1)), "1-D"),
    "params-dtype": (
        _tamper(params=lambda r: r["params"].astype(np.float64)),
        "params is float64 but the file says dtype float32",
    ),
    "dtype-mismatch": (_tamper(dtype=np.array("float64")), "params is float32"),
    "config-dtype": (_tamper(config=_config_with(dtype="float64")), "architecture says dtype"),
    "config-widths": (_tamper(config=_wider_first_layer), "architecture needs 54"),
    "config-loss": (
        _tamper(config=_config_with(loss={"name": "nope", "param": 0})),
        "not describe a valid network",
    ),
    "config-no-layers": (_tamper(config=_config_with(layers=[])), "no list of 'layers'"),
    "optimizer-class": (_tamper(optimizer__class=np.array("os.system")), "unknown optimizer class"),
    "optimizer-hyper": (
        _tamper(optimizer__hyper=np.array('{"lr": -1}')),
        "invalid Adam hyper-parameters",
    ),
    "optimizer-arg": (
        _tamper(optimizer__hyper=np.array('{"lr": 0.1, "evil": 1}')),
        "unknown Adam argument",
    ),
    "optimizer-state-length": (
        _tamper(optimizer__state__exp_avg=np.zeros(4, np.float32)),
        "optimizer state 'exp_avg' has 4 values",
    ),
    "optimizer-state-missing": (
        _tamper(optimizer__state__exp_avg_sq=None),
        "invalid optimizer state",
    ),
    "extra-dtype": (_tamper(extra__when=np.array(["2024-01-01"], dtype="datetime64[D]")), "only numbers"),
    "orphan-state": (_tamper(optimizer__class=None), "without 'optimizer.class'"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_files_are_rejected_with_a_clear_value_error(saved, name):
    path, _ = saved
    damage, message = BAD_FILES[name]
    damage(path)
    with pytest.raises(ValueError, match=message):
        fio.load_checkpoint(path)
