import pytest

import mlops

KINDS = {
    "config": (mlops.ConfigError, "mlops.config"),
    "data_source": (mlops.DataSourceError, "mlops.data_source"),
    "data": (mlops.DataError, "mlops.data"),
    "tracking": (mlops.TrackingError, "mlops.tracking"),
    "not_found": (mlops.NotFoundError, "mlops.not_found"),
    "conflict": (mlops.ConflictError, "mlops.conflict"),
    "device": (mlops.DeviceError, "mlops.device"),
    "integrity": (mlops.IntegrityError, "mlops.integrity"),
    "internal": (mlops.InternalError, "mlops.internal"),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_cpp_throw_arrives_as_its_own_class_with_the_message_intact(kind):
    cls, error_id = KINDS[kind]
    message = "täst: table 'x', row 7 \u2603"
    with pytest.raises(cls) as info:
        mlops._core._raise_for_test(kind, message)
    assert type(info.value) is cls
    assert isinstance(info.value, mlops.MlopsError)
    assert str(info.value) == f"[{error_id}] {message}"
    assert info.value.id == error_id
    assert info.value.detail == message
    # No other mlops class catches it by accident.
    for other, _ in KINDS.values():
        if other is not cls:
            assert not isinstance(info.value, other)


def test_tracking_error_carries_http_status_and_server_code():
    with pytest.raises(mlops.TrackingError) as info:
        mlops._core._raise_for_test("tracking", "down")
    assert info.value.http_status == 503
    assert info.value.error_code == "TEMPORARILY_UNAVAILABLE"


def test_hierarchy_fits_python_conventions():
    assert issubclass(mlops.MlopsError, Exception)
    assert issubclass(mlops.DataError, ValueError)
    assert issubclass(mlops.ConfigError, ValueError)
    assert issubclass(mlops.NotFoundError, LookupError)
    assert issubclass(mlops.DeviceError, RuntimeError)
    for cls, _ in KINDS.values():
        assert issubclass(cls, mlops.MlopsError)
        assert cls.__module__ == "mlops"
