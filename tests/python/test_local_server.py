"""mlops.local_server on a MariaDB store: MLflow's migrations need a utf8mb4 database, so the server makes one
when it is missing and refuses, with a typed error, one in another character set that someone else made."""

from __future__ import annotations

import pathlib

import pytest

import mlops
from mariadb_server import MariaDB, available
from mlops.local_server import MlflowServer

pytestmark = [pytest.mark.mysql, pytest.mark.mlflow, pytest.mark.slow]


@pytest.fixture(scope="module")
def mariadb():
    if not available():
        pytest.fail("MariaDB (mariadbd) is not installed: run tools/setup.sh")
    with MariaDB() as server:
        yield server


def _charset(server: MariaDB, name: str) -> tuple:
    conn = server.root()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
                        "WHERE SCHEMA_NAME = %s", (name,))
            return cur.fetchone()
    finally:
        conn.close()


def test_a_missing_store_database_is_created_utf8mb4_and_holds_any_language(mariadb, tmp_path: pathlib.Path):
    uri = mariadb.store_uri("fresh_store", charset=None)
    with MlflowServer(tmp_path, backend_store_uri=uri) as server:
        assert _charset(mariadb, "fresh_store") == ("utf8mb4", "utf8mb4_bin")
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=server.url)
        exp = client.create_experiment("実験 📦")
        assert client.get_experiment(exp).name == "実験 📦"
        client.create_registered_model("客户-ü")
        assert client.get_registered_model("客户-ü").name == "客户-ü"


def test_a_latin1_store_database_is_refused_with_a_config_error(mariadb, tmp_path: pathlib.Path):
    uri = mariadb.store_uri("old_store", charset="latin1")
    server = MlflowServer(tmp_path, backend_store_uri=uri)
    with pytest.raises(mlops.ConfigError, match=r"'old_store' uses the character set latin1.*utf8mb4"):
        server.start()
    assert server._process is None
    assert _charset(mariadb, "old_store")[0] == "latin1"  # left as it was, not converted behind the owner's back
