"""CudaTrainer, AdapterSpec and Adapter from Python: training, determinism, errors, files, progress."""

import math
import re
import pathlib

import numpy as np
import pytest

import mlops


def blobs(rows, d, k, seed, spread=0.5):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2, size=(k, d)).astype(np.float32)
    y = (np.arange(rows) % k).astype(np.int32)
    X = (centres[y] + spread * rng.normal(size=(rows, d))).astype(np.float32)
    return mlops.Dataset(X, y, classes=[f"c{i}" for i in range(k)])


def spec(name, ds, **kw):
    args = dict(epochs=5, batch_size=32, learning_rate=0.05, l2=1e-4, validation_fraction=0.2)
    args.update(kw)
    return mlops.AdapterSpec(name=name, dataset=ds, **args)


def cpu(**kw):
    kw.setdefault("progress", False)
    return mlops.CudaTrainer(device="cpu", seed=kw.pop("seed", 3), **kw)


def weights(trained):
    return {k: v for k, v in trained.adapter.tensors().items()}


def test_fit_learns_separable_data_and_reports_history():
    seen = []
    res = cpu().fit(
        [spec("soft", blobs(500, 12, 4, 1)), spec("mlp", blobs(500, 12, 4, 2), hidden=16)],
        on_epoch=lambda name, epoch, m: seen.append((name, epoch, m.val_accuracy)),
    )
    assert [r.name for r in res] == ["soft", "mlp"]
    for r in res:
        assert len(r.history.epochs) == 5
        assert r.history.val_accuracy[-1] > 0.95
        assert r.history.loss[-1] < r.history.loss[0]
        assert r.device == "cpu"
        assert r.lineage["device"] == "cpu" and r.lineage["seed"] == 3
    assert sorted((n, e) for n, e, _ in seen) == sorted([(n, e) for n in ("soft", "mlp") for e in range(1, 6)])
    assert set(weights(res[1])) == {"W1", "b1", "W2", "b2"}
    assert weights(res[1])["W1"].shape == (12, 16)
    assert weights(res[0])["W"].shape == (12, 4)


def test_same_seed_is_bit_identical_and_thread_count_does_not_matter():
    specs = [spec(f"a{i}", blobs(150 + 7 * i, 6, 2 + i % 3, i), hidden=(4 if i % 2 else 0)) for i in range(10)]
    r1 = cpu(threads=2).fit(specs)
    r2 = cpu(threads=2).fit(specs)
    r3 = cpu(threads=1).fit(specs)
    for a, b, c in zip(r1, r2, r3):
        for name, w in weights(a).items():
            assert np.array_equal(w, weights(b)[name])
            assert np.array_equal(w, weights(c)[name])
    other = cpu(threads=2, seed=4).fit(specs[:1])[0]
    assert not np.array_equal(weights(other)["W"], weights(r1[0])["W"])


def test_one_adapter_alone_equals_the_same_adapter_inside_a_batch_of_100():
    specs = [
        spec(f"customer-{i}", blobs(120 + i, 8, 2 + i % 4, 100 + i), epochs=3, hidden=(3 if i % 5 == 0 else 0))
        for i in range(100)
    ]
    together = cpu(threads=2).fit(specs)
    for i in (0, 37, 99):
        alone = cpu(threads=1).fit([specs[i]])[0]
        for name, w in weights(alone).items():
            assert np.array_equal(w, weights(together[i])[name]), (i, name)
        assert alone.history.loss == together[i].history.loss


@pytest.mark.slow
def test_digits_accuracy_within_one_point_of_sklearn():
    sklearn = pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    y = y.astype(np.int32)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(y))
    test, train = perm[:450], perm[450:]
    C = 1.0
    l2 = 1.0 / (C * len(train))  # sklearn: C*sum(CE) + |W|^2/2  ==  mean(CE) + l2/2 |W|^2
    ds = mlops.Dataset(np.ascontiguousarray(X[train]), y[train])
    trained = cpu().fit(
        [mlops.AdapterSpec(name="digits", dataset=ds, epochs=60, batch_size=64, learning_rate=0.01, l2=l2,
                           validation_fraction=0.0)]
    )[0]
    ours = float(np.mean(trained.adapter.predict_indices(np.ascontiguousarray(X[test])) == y[test]))
    ref = LogisticRegression(C=C, max_iter=5000).fit(X[train], y[train])
    theirs = float(np.mean(ref.predict(X[test]) == y[test]))
    assert sklearn is not None
    # Same objective, different optimiser: no more than one point worse than the converged reference.
    assert ours >= theirs - 0.01, (ours, theirs)
    assert math.isnan(trained.history.val_accuracy[-1])


@pytest.mark.parametrize(
    "change, field, error",
    [
        (dict(batch_size=0), "batch_size", mlops.ConfigError),
        (dict(learning_rate=0.0), "learning_rate", mlops.ConfigError),
        (dict(learning_rate=-1.0), "learning_rate", mlops.ConfigError),
        (dict(epochs=0), "epochs", mlops.ConfigError),
        (dict(optimizer="lbfgs"), "optimizer", mlops.ConfigError),
        (dict(validation_fraction=1.0), "validation_fraction", mlops.ConfigError),
        (dict(class_weights=[1.0]), "class_weights", mlops.ConfigError),
        (dict(class_weights=[1.0, -2.0]), "class_weights", mlops.ConfigError),
    ],
)
def test_bad_hyperparameters_are_config_errors_naming_adapter_and_field(change, field, error):
    calls = []
    fine = spec("fine", blobs(60, 3, 2, 0))
    # Refused when the spec is made, or (class weights against the dataset's classes) by fit before training.
    with pytest.raises(error) as info:
        cpu().fit([fine, spec("broken-7", blobs(60, 3, 2, 1), **change)], on_epoch=lambda *a: calls.append(a))
    assert "broken-7" in str(info.value) and field in str(info.value)
    assert calls == []  # raised before any training


@pytest.mark.parametrize(
    "change, field, says",
    [
        (dict(hidden=-1), "hidden", "must be >= 0, got -1"),
        (dict(batch_size=-1), "batch_size", "must be >= 1, got -1"),
        (dict(epochs=2**31), "epochs", "kMaxEpochs"),
        (dict(epochs=2**32 + 1), "epochs", "got 4294967297"),  # not taken modulo 2^32 (which is 1 epoch)
        (dict(epochs=10**9), "epochs", "must be <= 100000"),
        (dict(hidden=2**20), "hidden", "kMaxHidden"),
        (dict(batch_size=2**40), "batch_size", "kMaxBatchSize"),
        (dict(patience=-3), "patience", "must be >= 0"),
        (dict(epochs=2**70), "epochs", "64-bit"),
        (dict(hidden=-(2**70)), "hidden", "64-bit"),
        (dict(epochs=2.5), "epochs", "must be an integer, got float"),
        (dict(hidden=True), "hidden", "must be an integer, got bool"),
        (dict(optimizer="rmsprop"), "optimizer", "'rmsprop'"),
        (dict(learning_rate=float("nan")), "learning_rate", "got nan"),
    ],
)
def test_out_of_range_integers_are_config_errors_when_the_spec_is_made(change, field, says):
    with pytest.raises(mlops.ConfigError) as info:
        spec("big-7", blobs(20, 3, 2, 0), **change)
    message = str(info.value)
    assert f"field '{field}'" in message and says in message, message


def test_integer_fields_are_64_bit_and_checked_again_by_fit():
    s = spec("n", blobs(40, 3, 2, 0), epochs=np.int64(2))  # NumPy integers are integers
    assert s.epochs == 2 and isinstance(s.epochs, int)
    s.epochs = 2**40  # a setter takes any 64-bit integer; fit refuses it naming the limit
    with pytest.raises(mlops.ConfigError, match="kMaxEpochs"):
        cpu().fit([s])
    with pytest.raises(mlops.ConfigError, match="64-bit"):
        s.hidden = 2**64
    s.optimizer = "sgd"
    assert s.optimizer == "sgd" and s.params()["optimizer"] == "sgd"
    with pytest.raises(mlops.ConfigError, match="optimizer"):
        s.optimizer = "lbfgs"


def _ds(X, y, classes=None):
    return mlops.Dataset(np.asarray(X, dtype=np.float32), np.asarray(y, dtype=np.int32), classes=classes)


@pytest.mark.parametrize(
    "dataset, field",
    [
        (lambda: _ds(np.zeros((0, 3)), np.zeros(0), ["a", "b"]), "empty"),
        (lambda: _ds(np.ones((4, 2)), [0, 0, 0, 0]), "dataset.classes"),
        (lambda: _ds(np.ones((4, 2)), [1, 1, 1, 1], ["a", "b"]), "single class"),
        (lambda: _ds(np.ones((4, 2)), [0, 0, 0, 0], ["only"]), "classes"),
        (lambda: _ds([[1, np.nan], [0, 1], [1, 1]], [0, 1, 0]), "field X"),
        (lambda: _ds([[1, np.inf], [0, 1], [1, 1]], [0, 1, 0]), "field X"),
        (lambda: _ds([[1, 2], [0, 1], [1, 1]], [0, 1, 7], ["a", "b"]), "field y"),
    ],
)
def test_bad_data_is_a_data_error_naming_adapter_and_field(dataset, field):
    with pytest.raises(mlops.DataError) as info:
        cpu().fit([spec("bad-data", dataset())])
    assert "bad-data" in str(info.value) and field in str(info.value)


def test_mismatched_widths_and_duplicate_names():
    with pytest.raises(mlops.DataError):
        mlops.Dataset(np.ones(6, dtype=np.float32).reshape(3, 2), np.zeros(4, dtype=np.int32))
    trained = cpu().fit([spec("w", blobs(80, 4, 2, 0))])[0]
    with pytest.raises(mlops.DataError, match="columns"):
        trained.adapter.predict_proba(np.ones((2, 5), dtype=np.float32))
    with pytest.raises(TypeError, match="float32"):
        trained.adapter.predict_proba(np.ones((2, 4)))
    with pytest.raises(mlops.ConfigError, match="'twice'.*name"):
        cpu().fit([spec("twice", blobs(50, 2, 2, 0)), spec("twice", blobs(50, 2, 2, 1))])


def test_device_choice_is_explicit():
    auto = mlops.CudaTrainer(device="auto", progress=False)
    if auto.device == "cpu":
        assert "CPU" in auto.device_reason
        with pytest.raises(mlops.DeviceError, match="cuda"):
            mlops.CudaTrainer(device="cuda")
        with pytest.raises(mlops.DeviceError):
            mlops.CudaTrainer(device="cuda:3")
    else:
        assert auto.device.startswith("cuda:0 (")
    with pytest.raises(mlops.ConfigError):
        mlops.CudaTrainer(device="gpu")
    assert mlops.CudaTrainer(device="cpu").device == "cpu"


def test_save_load_predict_and_the_safetensors_package_reads_the_file(tmp_path: pathlib.Path):
    from safetensors import safe_open
    from safetensors.numpy import load_file

    ds = blobs(300, 5, 3, 8)
    trained = cpu().fit([spec("customer-1", ds, hidden=6, code_commit="abc123")])[0]
    path = tmp_path / "adapter.safetensors"
    trained.adapter.save(path)
    tensors = load_file(str(path))
    assert set(tensors) == {"W1", "b1", "W2", "b2"}
    for name, w in trained.adapter.tensors().items():
        assert tensors[name].dtype == np.float32
        assert np.array_equal(tensors[name], w)
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
    import json

    assert meta["format"] == "mlops.adapter.v1"
    assert json.loads(meta["classes"]) == ["c0", "c1", "c2"]
    assert meta["hidden"] == "6"
    assert json.loads(meta["featurizer"]) == {}
    assert json.loads(meta["spec"])["batch_size"] == 32
    lineage = json.loads(meta["lineage"])
    assert lineage["code_commit"] == "abc123" and lineage["digest"] == ds.digest and lineage["seed"] == 3

    # The documented formula, computed with numpy from the file alone, matches predict_proba.
    X = ds.X
    hid = np.maximum(X @ tensors["W1"] + tensors["b1"], 0)
    z = hid @ tensors["W2"] + tensors["b2"]
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    back = mlops.Adapter.load(path)
    np.testing.assert_allclose(back.predict_proba(X), p, rtol=1e-4, atol=1e-6)
    labels, probs = back.predict(X), back.predict_proba(X)
    assert labels.shape == (300,) and probs.shape == (300, 3) and labels.dtype == object
    assert np.mean(labels == np.array(ds.classes, dtype=object)[ds.y]) > 0.95
    assert back.lineage == trained.lineage
    many = mlops.Adapter.predict_many([back, trained.adapter], X)
    assert np.array_equal(many[0], many[1])


def test_truncated_or_corrupted_files_are_integrity_errors(tmp_path: pathlib.Path):
    trained = cpu().fit([spec("c", blobs(100, 4, 2, 0))])[0]
    path = tmp_path / "a.safetensors"
    trained.adapter.save(path)
    data = path.read_bytes()
    for bad in (data[:-4], data[:20], data[:4], data[:-1] + bytes([data[-1] ^ 1]), b"\x10" + data[1:]):
        p = tmp_path / "bad.safetensors"
        p.write_bytes(bad)
        with pytest.raises(mlops.IntegrityError):
            mlops.Adapter.load(p)
    with pytest.raises(mlops.NotFoundError):
        mlops.Adapter.load(tmp_path / "missing.safetensors")
    # A failed save leaves no partial file behind.
    with pytest.raises(mlops.ConfigError):
        trained.adapter.save(tmp_path / "no-such-dir" / "x.safetensors")
    assert not (tmp_path / "no-such-dir").exists()


def test_early_stopping_keeps_the_best_epoch_and_class_weights_change_the_model():
    ds = blobs(400, 6, 3, 9, spread=3.0)
    r = cpu().fit([spec("es", ds, epochs=80, patience=2, optimizer="sgd", learning_rate=0.5)])[0]
    assert r.history.stopped_early and len(r.history) < 80
    best = min(r.history.val_loss)
    assert r.history.epochs[r.history.best_epoch - 1].val_loss == best
    plain = cpu().fit([spec("cw", ds)])[0]
    weighted = cpu().fit([spec("cw", ds, class_weights=[1.0, 1.0, 20.0])])[0]
    share = lambda t: np.mean(t.adapter.predict_indices(ds.X) == 2)  # noqa: E731
    assert share(weighted) > share(plain)


def test_callback_exception_stops_fit_and_propagates():
    specs = [spec(f"x{i}", blobs(200, 4, 2, i)) for i in range(4)]

    def boom(name, epoch, metrics):
        raise KeyError("stop now")

    with pytest.raises(KeyError, match="stop now"):
        cpu().fit(specs, on_epoch=boom)


def test_progress_bar_over_all_steps_and_off_switch(capsys):
    specs = [spec(f"p{i}", blobs(100, 3, 2, i), epochs=2) for i in range(3)]
    total = mlops.CudaTrainer.planned_steps(specs)
    assert total == 3 * 2 * math.ceil(80 / 32)
    mlops.CudaTrainer(device="cpu", progress=True).fit(specs)
    err = capsys.readouterr().err
    assert f"{total}/{total}" in err and "training 3 adapters on cpu" in err
    mlops.CudaTrainer(device="cpu", progress=False).fit(specs)
    assert capsys.readouterr().err == ""
    mlops.CudaTrainer(device="cpu", progress=True).fit(specs, progress=False)
    assert capsys.readouterr().err == ""


def test_params_are_a_deterministic_flat_string_map():
    s = spec("p", blobs(50, 2, 2, 0), class_weights=[1.0, 2.5])
    p = s.params()
    assert p == s.params()
    assert all(isinstance(v, str) for v in p.values())
    assert p["learning_rate"] == "0.05" and p["class_weights"] == "[1,2.5]" and p["optimizer"] == "adam"
    assert set(p) == {"hidden", "epochs", "batch_size", "learning_rate", "l2", "validation_fraction", "optimizer",
                      "momentum", "patience", "class_weights"}


# ---- GPU: skipped without a usable CUDA device --------------------------------------------------------

def _gpu_or_skip():
    t = mlops.CudaTrainer(device="auto", progress=False)
    if t.device == "cpu":
        pytest.skip(f"no usable CUDA GPU: {t.device_reason}")
    return t


@pytest.mark.gpu
def test_gpu_weights_repeat_and_agree_with_the_cpu():
    _gpu_or_skip()
    specs = [spec(f"g{i}", blobs(700 + 13 * i, 16, 3 + i % 3, i), epochs=3, hidden=(8 if i % 2 else 0))
             for i in range(8)]
    g1 = mlops.CudaTrainer(device="cuda", seed=5, progress=False).fit(specs)
    g2 = mlops.CudaTrainer(device="cuda", seed=5, progress=False).fit(specs)
    c = mlops.CudaTrainer(device="cpu", seed=5, progress=False).fit(specs)
    for a, b, cc in zip(g1, g2, c):
        assert a.device.startswith("cuda:0")
        for name, w in weights(a).items():
            assert np.array_equal(w, weights(b)[name])
            np.testing.assert_allclose(w, weights(cc)[name], rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_gpu_early_stopping_and_mixed_shapes():
    _gpu_or_skip()
    specs = [spec("e", blobs(400, 6, 3, 9, spread=3.0), epochs=40, patience=2, optimizer="sgd", learning_rate=0.5),
             spec("w", blobs(300, 9, 2, 1), batch_size=50)]
    g = mlops.CudaTrainer(device="cuda", seed=1, progress=False).fit(specs)
    c = mlops.CudaTrainer(device="cpu", seed=1, progress=False).fit(specs)
    assert [len(x.history) for x in g] == [len(x.history) for x in c]
    assert g[1].history.val_accuracy[-1] > 0.95


@pytest.mark.gpu
def test_gpu_alone_equals_batched_and_steps_run_as_cuda_graphs():
    _gpu_or_skip()
    target = spec("target", blobs(600, 40, 4, 42), batch_size=64)
    others = [spec(f"o{i}", blobs(400 + 9 * i, 40, 4, 70 + i), batch_size=64) for i in range(30)]
    alone = mlops.CudaTrainer(device="cuda", seed=2, progress=False).fit([target])[0]
    batched = mlops.CudaTrainer(device="cuda", seed=2, progress=False).fit(others[:11] + [target] + others[11:])
    assert batched[11].name == "target"
    for name, w in weights(alone).items():
        assert np.array_equal(w, weights(batched[11])[name])
    assert alone.notes == [] and batched[0].notes == []


@pytest.mark.gpu
def test_gpu_out_of_memory_is_a_device_error_naming_sizes():
    _gpu_or_skip()
    big = spec("big", blobs(100_000, 512, 2, 3), epochs=1)
    with pytest.raises(mlops.DeviceError, match=r"out of device memory.*100000 rows"):
        mlops.CudaTrainer(device="cuda", progress=False, device_memory_limit=200 * 2**20).fit([big])
    torch = pytest.importorskip("torch")
    # The device really nearly full (another process's tensors): the same error, not a crash.
    free, _ = torch.cuda.mem_get_info()
    hog = torch.empty(max(0, free - 300 * 2**20), dtype=torch.uint8, device="cuda")
    try:
        with pytest.raises(mlops.DeviceError, match="out of device memory"):
            mlops.CudaTrainer(device="cuda", progress=False).fit([big])
    finally:
        del hog
        torch.cuda.empty_cache()
    assert len(mlops.CudaTrainer(device="cuda", progress=False).fit([spec("small", blobs(200, 8, 2, 1))])) == 1


@pytest.mark.gpu
def test_gpu_callback_exception_propagates_and_the_gpu_trains_again():
    _gpu_or_skip()
    specs = [spec(f"c{i}", blobs(300, 10, 3, i), hidden=(6 if i % 2 else 0)) for i in range(4)]
    trainer = mlops.CudaTrainer(device="cuda", progress=False)
    calls = []

    def boom(name, epoch, metrics):
        calls.append(name)
        if len(calls) == 3:
            raise KeyError("from the callback")

    with pytest.raises(KeyError, match="from the callback"):
        trainer.fit(specs, on_epoch=boom)
    assert len(calls) == 3
    again = trainer.fit(specs)
    assert [len(t.history) for t in again] == [5, 5, 5, 5]


def test_deterministic_false_is_refused_because_every_backend_is_deterministic():
    with pytest.raises(mlops.ConfigError, match="deterministic"):
        mlops.CudaTrainer(device="cpu", deterministic=False)
    t = cpu()
    assert t.deterministic is True and t.device_memory_limit == 0
    assert t.fit([spec("n", blobs(60, 3, 2, 0))])[0].notes == []


def test_any_single_byte_change_is_detected_or_harmless(tmp_path: pathlib.Path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    trained = cpu().fit([spec("h", blobs(60, 3, 2, 0), hidden=2, code_commit="c0ffee")])[0]
    data = trained.adapter.to_bytes()
    ref = trained.adapter

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(pos=st.integers(0, len(data) - 1), value=st.integers(0, 255), cut=st.integers(0, len(data) - 1))
    def check(pos, value, cut):
        changed = data[:pos] + bytes([value]) + data[pos + 1:]
        try:
            back = mlops.Adapter.from_bytes(changed)
        except mlops.IntegrityError:
            pass
        else:  # only bytes that carry no content (JSON whitespace) may change without an error
            assert back.lineage == ref.lineage and back.spec == ref.spec and back.classes == ref.classes
            for name, w in ref.tensors().items():
                assert np.array_equal(back.tensors()[name], w)
        with pytest.raises(mlops.IntegrityError):
            mlops.Adapter.from_bytes(data[:cut])

    check()


def test_foreign_safetensors_files_and_width_mismatch_in_batched_prediction(tmp_path: pathlib.Path):
    from safetensors.numpy import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"W": np.ones((3, 2), dtype=np.float32), "b": np.zeros(2, dtype=np.float32)}, str(foreign))
    with pytest.raises(mlops.IntegrityError, match="not an mlops adapter"):
        mlops.Adapter.load(foreign)
    a = cpu().fit([spec("four", blobs(60, 4, 2, 0))])[0].adapter
    b = cpu().fit([spec("five", blobs(60, 5, 2, 0))])[0].adapter
    with pytest.raises(mlops.DataError, match="adapter 1: width 5"):
        mlops.Adapter.predict_many([a, b], np.ones((3, 4), dtype=np.float32))


def _nvidia_driver_loads() -> bool:
    import ctypes

    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


@pytest.mark.skipif("cuda" not in mlops.components, reason="built without the CUDA module")
@pytest.mark.skipif(_nvidia_driver_loads(), reason="this machine has an NVIDIA driver")
def test_a_machine_without_an_nvidia_driver_is_told_so():
    auto = mlops.CudaTrainer(device="auto", progress=False)
    assert auto.device == "cpu"
    assert "no NVIDIA driver" in auto.device_reason and "insufficient" not in auto.device_reason
    with pytest.raises(mlops.DeviceError, match="no NVIDIA driver"):
        mlops.CudaTrainer(device="cuda")


def test_history_prints_its_epochs_and_best_epoch():
    trained = cpu().fit([spec("h", blobs(80, 4, 2, 0), epochs=3)])[0]
    assert re.fullmatch(r"History\(epochs=3, best_epoch=\d, val_accuracy=\d\.\d{3}\)", repr(trained.history)), \
        repr(trained.history)
