import pytest

import mlops

pytestmark = pytest.mark.skipif(not hasattr(mlops, "Catalog"), reason="built without the pipeline component")


def test_load_toml_with_defaults(tmp_path):
    path = tmp_path / "adapters.toml"
    path.write_text(
        """
[defaults]
table = "tickets"
label = "intent"
text = "body"

[[adapters]]
name = "kunde-ä"
where = "customer = ?"
params = ["ä"]
epochs = 3
"""
    )
    cat = mlops.Catalog.load(path)
    assert len(cat) == 1 and "kunde-ä" in cat and cat.names() == ["kunde-ä"]
    e = cat["kunde-ä"]
    assert (e.table, e.label, e.text, e.where, e.params) == ("tickets", "intent", "body", "customer = ?", ["ä"])
    assert e.hyperparameters["epochs"] == 3 and e.hyperparameters["optimizer"] == "adam"
    assert e.featurizer == {"dimension": 1024, "seed": 0}
    assert mlops.Catalog.from_dict(cat.to_dict()).to_dict() == cat.to_dict()
    assert [x.name for x in cat] == ["kunde-ä"]


def test_all_problems_reported_together():
    with pytest.raises(mlops.DataError) as info:
        mlops.Catalog.from_dict(
            {
                "defaults": {"table": "t", "label": "y", "features": ["a"]},
                "adapters": [{"name": "a", "batch_size": 0}, {"name": "b", "l2": "big"}, {"name": "a"}],
            },
            origin="adapters.json",
        )
    lines = str(info.value).splitlines()
    assert lines[0].endswith("adapters.json has 3 problems:")
    assert any("adapter 'a' (#1): field 'batch_size': must be >= 1, got 0" in l for l in lines)
    assert any("adapter 'b' (#2): field 'l2': must be a number, got string" in l for l in lines)
    assert any("adapter 'a' (#3): field 'name': duplicate name" in l for l in lines)


def test_missing_file_and_unknown_name():
    with pytest.raises(mlops.NotFoundError):
        mlops.Catalog.load("/nonexistent/adapters.json")
    cat = mlops.Catalog.from_json('{"adapters": [{"name": "x", "table": "t", "label": "y", "features": ["f"]}]}')
    with pytest.raises(KeyError):
        cat["nope"]


def test_integers_are_bounded_not_truncated():
    base = {"defaults": {"table": "t", "label": "y", "text": "body"}}
    with pytest.raises(mlops.DataError, match=r"field 'epochs': must be <= 100000 \(the trainer's limit kMaxEpochs\), got 4294967297"):
        mlops.Catalog.from_dict({**base, "adapters": [{"name": "a", "epochs": 4294967297}]})
    with pytest.raises(mlops.DataError, match=r"field 'featurizer.dimension': .* got 4294967312"):
        mlops.Catalog.from_dict({**base, "adapters": [{"name": "a", "featurizer": {"dimension": 4294967312}}]})
    cat = mlops.Catalog.from_dict({**base, "adapters": [{"name": "a", "class_weights": [1.0, 3.0]}]})
    assert cat["a"].hyperparameters["class_weights"] == [1.0, 3.0]


@pytest.mark.skipif("dolt" not in mlops.components, reason="built without the dolt component")
def test_a_catalog_table_config_with_a_number_out_of_range_is_named(tmp_path):
    src = mlops.DoltSource(f"doltlite:{tmp_path / 'c.db'}", create=True)
    src.execute("CREATE TABLE adapters (name TEXT PRIMARY KEY, config TEXT NOT NULL)")
    src.execute("INSERT INTO adapters VALUES (?, ?)", ("*", '{"table": "t", "label": "y", "text": "body"}'))
    src.execute("INSERT INTO adapters VALUES (?, ?)", ("a", '{"epochs": 1e400}'))
    src.commit("catalog")
    with pytest.raises(mlops.DataError, match=r"adapter 'a': column 'config' is not JSON \(.*number overflow"):
        mlops.load_catalog_table(src)
