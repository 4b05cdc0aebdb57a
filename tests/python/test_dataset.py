import numpy as np
import pytest

import mlops


def make(rows=4, cols=3):
    X = np.arange(rows * cols, dtype=np.float32).reshape(rows, cols)
    y = (np.arange(rows) % 2).astype(np.int32)
    return X, y


def test_views_are_zero_copy_and_read_only():
    X, y = make()
    ds = mlops.Dataset(X, y, classes=["no", "yes"], lineage={"table": "t", "commit": "abc"})
    a, b = ds.X, ds.X
    assert a.dtype == np.float32 and a.shape == (4, 3) and a.flags.c_contiguous
    assert a.__array_interface__["data"][0] == b.__array_interface__["data"][0]  # same memory each time
    assert not a.flags.writeable
    with pytest.raises(ValueError):
        a[0, 0] = 1
    np.testing.assert_array_equal(a, X)
    np.testing.assert_array_equal(ds.y, y)
    assert ds.classes == ["no", "yes"]
    assert ds.lineage["table"] == "t" and ds.lineage["rows"] == 4 and ds.lineage["digest"] == ds.digest
    assert len(ds) == 4
    assert "table='t'" in repr(ds)


def test_views_outlive_the_dataset_object():
    X, y = make()
    view = mlops.Dataset(X, y).X
    import gc

    gc.collect()
    np.testing.assert_array_equal(view, X)


def test_digest_depends_on_contents_only():
    X, y = make()
    d1 = mlops.Dataset(X, y, lineage={"table": "a"})
    d2 = mlops.Dataset(X.copy(), y.copy(), lineage={"table": "b"})
    assert d1.digest == d2.digest
    X2 = X.copy()
    X2[0, 0] = 99
    assert mlops.Dataset(X2, y).digest != d1.digest


@pytest.mark.parametrize(
    "X, y, needle",
    [
        (np.zeros((2, 2), dtype=np.float64), np.zeros(2, dtype=np.int32), "X must have dtype float32"),
        (np.zeros((2, 2), dtype=np.float32), np.zeros(2, dtype=np.int64), "y must have dtype int32"),
        (np.zeros(4, dtype=np.float32), np.zeros(2, dtype=np.int32), "X must be 2-dimensional"),
        (np.zeros((2, 4), dtype=np.float32)[:, ::2], np.zeros(2, dtype=np.int32), "C-contiguous"),
        ([[1.0]], np.zeros(1, dtype=np.int32), "must be a NumPy array"),
    ],
)
def test_wrong_arrays_are_type_errors(X, y, needle):
    with pytest.raises(TypeError, match=needle):
        mlops.Dataset(X, y)


def test_wrong_sizes_and_values_are_data_errors():
    X, y = make()
    with pytest.raises(mlops.DataError, match="expected 4"):
        mlops.Dataset(X, y[:3])
    X[1, 2] = np.nan
    ds = mlops.Dataset(X, y)
    with pytest.raises(mlops.DataError, match=r"adapter 'c1': field X, row 1, column 2"):
        ds.validate("adapter 'c1'")


def test_default_classes_and_take():
    X, y = make()
    ds = mlops.Dataset(X, y)
    assert ds.classes == ["0", "1"]
    t = ds.take([3, 1])
    np.testing.assert_array_equal(t.X, X[[3, 1]])
