"""Tests of metalearn.tasks: preprocessing, dataset loaders, generators, tasks, models, suites."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from metalearn.exceptions import DatasetError, InvalidInputError, TaskSuiteError, UnknownNameError
from metalearn.tasks import (
    GENERATORS,
    MODEL_NAMES,
    Dataset,
    TabularPreprocessor,
    TaskSuite,
    default_data_dir,
    default_task_suite,
    initial_labeled_set,
    iter_manifest_folder,
    list_manifest,
    list_task_suites,
    load_dataset,
    load_datasets,
    load_manifest_folder,
    load_sklearn_dataset,
    load_table,
    load_task_suite,
    make_model,
    make_task,
    sample_synthetic_dataset,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
ENVS = REPO_ROOT / "envs"
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def _table(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "a": rng.normal(5.0, 2.0, n),
            "b": rng.integers(0, 10, n),
            "color": rng.choice(["red", "green", "blue"], n),
            "target": rng.choice(["yes", "no"], n),
        }
    )


def _manifest_folder(root: Path) -> Path:
    """A small folder in the ../shared/datasets format: 3 datasets, 2 splits."""
    folder = root / "data"
    folder.mkdir()
    rows = []
    for i, (name, split) in enumerate([("alpha", "train"), ("beta", "validation"), ("gamma", "train")]):
        frame = _table(30 + 10 * i, seed=i)
        frame.to_csv(folder / f"{name}.csv.gz", index=False)
        rows.append({"name": name, "rows": len(frame), "features": 3, "classes": 2, "split": split})
    pd.DataFrame(rows).to_csv(folder / "MANIFEST.csv", index=False)
    return folder


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------------------------
def _mixed_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "num": [1.0, np.nan, 3.0, 4.0, 10.0, 2.0],
            "const": [7.0] * 6,
            "allnan": [np.nan] * 6,
            "cat": ["x", "y", None, "x", "z", "y"],
            "category": pd.Categorical(["p", "q", "p", None, "q", "p"]),
            "flag": [True, False, True, True, False, True],
        }
    )


def test_preprocessor_mixed_table_is_dense_finite_and_scaled() -> None:
    pre = TabularPreprocessor()
    out = pre.fit_transform(_mixed_frame())
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    assert np.isfinite(out).all()
    assert pre.numeric_columns_ == ["num", "const", "allnan"]
    assert pre.categorical_columns_ == ["cat", "category", "flag"]
    # 3 numeric columns + 3 (cat) + 2 (category) + 2 (flag) one-hot columns
    assert out.shape == (6, 3 + 3 + 2 + 2) == (6, pre.n_features_out_)
    num = out[:, 0]
    assert num[1] == pytest.approx(np.median(num[[0, 2, 3, 4, 5]]), abs=1.0)  # imputed, then scaled
    assert num.mean() == pytest.approx(0.0, abs=1e-12) and num.std() == pytest.approx(1.0)
    assert np.all(out[:, 1] == 0.0) and np.all(out[:, 2] == 0.0)  # constant / empty columns: 0, not NaN
    onehot = out[:, 3:6]
    assert set(np.unique(onehot)) == {0.0, 1.0} and np.all(onehot.sum(axis=1) == 1.0)
    # the missing category is imputed by the most frequent one ("x" and "y" tie: first in order)
    assert onehot[2].sum() == 1.0
    assert len(pre.get_feature_names_out()) == out.shape[1]


def test_preprocessor_unknown_category_at_transform_time() -> None:
    pre = TabularPreprocessor().fit(_mixed_frame())
    new = _mixed_frame().iloc[:2].copy()
    new["cat"] = ["never-seen", "x"]
    out = pre.transform(new)
    assert out.shape == (2, pre.n_features_out_) and np.isfinite(out).all()
    assert np.all(out[0, 3:6] == 0.0)  # unknown category: all zeros in its block
    assert out[1, 3:6].sum() == 1.0


def test_preprocessor_numeric_array_and_errors() -> None:
    X = np.random.default_rng(0).normal(3.0, 5.0, size=(50, 4))
    X[3, 2] = np.nan
    pre = TabularPreprocessor()
    out = pre.fit_transform(X)
    assert out.shape == (50, 4) and np.isfinite(out).all()
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-12)
    assert pre.transform(X[:5]).shape == (5, 4)
    with pytest.raises(InvalidInputError, match="columns"):
        pre.transform(X[:, :3])
    with pytest.raises(InvalidInputError, match="2-D"):
        pre.fit(np.arange(5.0))
    fitted_frame = TabularPreprocessor().fit(_mixed_frame())
    with pytest.raises(InvalidInputError, match="lacks column"):
        fitted_frame.transform(_mixed_frame().drop(columns=["cat"]))
    with pytest.raises(InvalidInputError, match="max_categories"):
        TabularPreprocessor(max_categories=1).fit(X)


def test_preprocessor_max_categories_and_clone() -> None:
    frame = pd.DataFrame({"c": [f"v{i % 12}" for i in range(120)]})
    assert TabularPreprocessor(max_categories=4).fit_transform(frame).shape == (120, 4)
    assert TabularPreprocessor(max_categories=None).fit_transform(frame).shape == (120, 12)
    assert clone(TabularPreprocessor(max_categories=5)).get_params()["max_categories"] == 5


# ---------------------------------------------------------------------------------------------
# Loaders
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, shape, n_classes",
    [("iris", (150, 4), 3), ("wine", (178, 13), 3), ("breast_cancer", (569, 30), 2), ("digits", (1797, 64), 10)],
)
def test_load_sklearn_dataset(name: str, shape: tuple[int, int], n_classes: int) -> None:
    ds = load_sklearn_dataset(name)
    assert isinstance(ds.X, pd.DataFrame) and ds.X.shape == shape
    assert ds.y.shape == (shape[0],) and ds.n_classes == n_classes
    assert ds.info["source"] == f"sklearn:{name}"


def test_load_sklearn_dataset_unknown_lists_valid() -> None:
    with pytest.raises(UnknownNameError, match="iris.*digits"):
        load_sklearn_dataset("mnist")


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_load_table_formats(tmp_path: Path, suffix: str) -> None:
    frame = _table()
    path = tmp_path / f"tab{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    ds = load_table(path)
    assert ds.name == "tab" and list(ds.X.columns) == ["a", "b", "color"]
    assert ds.y.tolist() == frame["target"].tolist()
    custom = load_table(path, label_column="color")
    assert "target" in custom.X.columns and custom.y.tolist() == frame["color"].tolist()


def test_load_table_drops_unlabeled_rows(tmp_path: Path) -> None:
    frame = _table()
    frame.loc[[1, 5], "target"] = None
    frame.to_csv(tmp_path / "t.csv", index=False)
    ds = load_table(tmp_path / "t.csv")
    assert ds.n_samples == len(frame) - 2 and ds.info["dropped_unlabeled"] == 2


def test_load_table_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_table(tmp_path / "missing.csv")
    _table().to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DatasetError, match="no label column 'label'.*color"):
        load_table(tmp_path / "t.csv", label_column="label")
    (tmp_path / "bad.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(DatasetError, match="cannot read"):
        load_table(tmp_path / "bad.parquet")
    (tmp_path / "bad.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="cannot read"):
        load_table(tmp_path / "bad.csv.gz")
    _write(tmp_path / "t.xlsx", "x")
    with pytest.raises(DatasetError, match="unsupported file type"):
        load_table(tmp_path / "t.xlsx")
    with pytest.raises(DatasetError, match="folder"):
        load_table(tmp_path)


def test_manifest_folder_splits_and_names(tmp_path: Path) -> None:
    folder = _manifest_folder(tmp_path)
    listing = list_manifest(folder)
    assert listing["name"].tolist() == ["alpha", "beta", "gamma"] and "file" in listing.columns
    assert list_manifest(folder, split="train")["name"].tolist() == ["alpha", "gamma"]
    train = load_manifest_folder(folder, split="train")
    assert [d.name for d in train] == ["alpha", "gamma"]
    assert [d.n_samples for d in train] == [30, 50] and train[0].info["split"] == "train"
    assert [d.name for d in load_manifest_folder(folder)] == ["alpha", "beta", "gamma"]
    picked = load_manifest_folder(folder, split="train", names=["gamma", "alpha"])
    assert [d.name for d in picked] == ["gamma", "alpha"]
    lazy = iter_manifest_folder(folder, split="validation")
    assert not isinstance(lazy, list) and [d.name for d in lazy] == ["beta"]


def test_manifest_folder_errors(tmp_path: Path) -> None:
    folder = _manifest_folder(tmp_path)
    with pytest.raises(InvalidInputError, match="valid splits: train, validation"):
        load_manifest_folder(folder, split="test")
    with pytest.raises(UnknownNameError, match="alpha"):
        load_manifest_folder(folder, split="train", names=["beta"])
    with pytest.raises(DatasetError, match="does not exist"):
        list_manifest(tmp_path / "nowhere")
    (folder / "gamma.csv.gz").unlink()
    with pytest.raises(DatasetError, match="gamma"):
        list_manifest(folder)
    _write(folder / "MANIFEST.csv", "title,split\nx,train\n")
    with pytest.raises(DatasetError, match="no 'name' column"):
        list_manifest(folder)


def test_folder_without_manifest_lists_tables(tmp_path: Path) -> None:
    _table().to_csv(tmp_path / "one.csv", index=False)
    assert list_manifest(tmp_path)["name"].tolist() == ["one"]
    with pytest.raises(DatasetError, match="split"):
        list_manifest(tmp_path, split="train")


def test_load_dataset_specs(tmp_path: Path) -> None:
    folder = _manifest_folder(tmp_path)
    assert load_dataset("sklearn:iris").name == "iris"
    assert load_dataset("wine").n_samples == 178
    assert load_dataset(str(folder / "beta.csv.gz")).name == "beta"
    assert load_dataset(f"file:{folder / 'beta.csv.gz'}").name == "beta"
    assert [d.name for d in load_datasets(f"folder:{folder}:train")] == ["alpha", "gamma"]
    assert load_dataset(f"folder:{folder}:beta").name == "beta"
    assert len(load_datasets(str(folder))) == 3 and len(load_datasets(f"folder:{folder}")) == 3
    with pytest.raises(DatasetError, match="resolves to 2 datasets"):
        load_dataset(f"folder:{folder}:train")
    with pytest.raises(UnknownNameError, match="neither a split"):
        load_datasets(f"folder:{folder}:nope")
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(str(tmp_path / "missing.csv"))
    with pytest.raises(UnknownNameError, match="sklearn:NAME"):
        load_dataset("no_such_dataset_anywhere")


def test_default_data_dir_honours_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METALEARN_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("METALEARN_DATA_DIR")
    found = default_data_dir()
    assert found is None or (found.is_dir() and found.name == "datasets")


def test_real_shared_folder_train_split_matches_manifest() -> None:
    if not (SHARED_DATASETS / "MANIFEST.csv").is_file():
        pytest.skip("../shared/datasets is not available")
    manifest = pd.read_csv(SHARED_DATASETS / "MANIFEST.csv")
    expected = manifest.loc[manifest["split"] == "train"].set_index("name")
    datasets = load_manifest_folder(SHARED_DATASETS, split="train")
    assert len(datasets) == len(expected) > 0
    for ds in datasets:
        row = expected.loc[ds.name]
        assert (ds.n_samples, ds.n_features, ds.n_classes) == (row["rows"], row["features"], row["classes"])
        assert ds.info["split"] == "train"


# ---------------------------------------------------------------------------------------------
# Synthetic generators
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generator_deterministic_and_valid(name: str) -> None:
    gen = GENERATORS[name]
    a = gen(np.random.default_rng(11), 250)
    b = gen(np.random.default_rng(11), 250)
    pd.testing.assert_frame_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert a.info == b.info and a.info["generator"] == name and a.info["params"]
    c = gen(np.random.default_rng(12), 250)
    assert not (c.X.shape == a.X.shape and np.allclose(c.X.to_numpy(), a.X.to_numpy()))
    for seed in range(25):
        n = 10 + 37 * seed
        ds = gen(np.random.default_rng(seed), n)
        X = ds.X.to_numpy()
        assert X.shape[0] == n == ds.y.shape[0]
        assert np.isfinite(X).all() and np.unique(ds.y).size >= 2


def test_generator_overrides_and_errors() -> None:
    ds = GENERATORS["classification"](np.random.default_rng(0), 300, n_classes=3, n_features=5, flip_y=0.0)
    assert ds.X.shape == (300, 5) and np.unique(ds.y).size == 3
    assert ds.info["params"]["n_classes"] == 3 and ds.info["params"]["flip_y"] == 0.0
    assert min(ds.info["params"]["weights"]) == pytest.approx(ds.info["params"]["minority_fraction"])
    xor = GENERATORS["xor"](np.random.default_rng(0), 100, n_xor_dims=2, n_noise_dims=3)
    assert xor.X.shape == (100, 5)
    board = GENERATORS["checkerboard"](np.random.default_rng(0), 100, n_classes=3, n_noise_dims=0)
    assert board.X.shape == (100, 2) and set(np.unique(board.y)) == {0, 1, 2}
    with pytest.raises(InvalidInputError, match="unknown parameter"):
        GENERATORS["moons"](np.random.default_rng(0), 100, factor=0.5)
    with pytest.raises(InvalidInputError, match="outside its limits"):
        GENERATORS["circles"](np.random.default_rng(0), 100, noise=-1.0)
    with pytest.raises(InvalidInputError, match="n_samples"):
        GENERATORS["xor"](np.random.default_rng(0), 5)
    with pytest.raises(InvalidInputError, match="inconsistent"):
        GENERATORS["classification"](np.random.default_rng(0), 100, n_features=2, n_classes=6, n_clusters_per_class=3)


def test_sample_synthetic_dataset() -> None:
    a = sample_synthetic_dataset(np.random.default_rng(3))
    b = sample_synthetic_dataset(np.random.default_rng(3))
    assert a.name == b.name and a.info["generator"] in GENERATORS
    assert 200 <= a.n_samples <= 2000
    assert sample_synthetic_dataset(np.random.default_rng(3), "moons", 77).n_samples == 77
    picked = {sample_synthetic_dataset(np.random.default_rng(s), n_samples=50).info["generator"] for s in range(40)}
    assert picked == set(GENERATORS)
    with pytest.raises(UnknownNameError, match="classification"):
        sample_synthetic_dataset(np.random.default_rng(0), "spirals")


# ---------------------------------------------------------------------------------------------
# make_task
# ---------------------------------------------------------------------------------------------
def _three_class_data(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    ds = GENERATORS["classification"](np.random.default_rng(5), n, n_classes=3, minority_fraction=0.1)
    return ds.X.to_numpy(), ds.y


def test_make_task_stratified_cold_and_warm() -> None:
    X, y = _three_class_data()
    cold = make_task(X, y, regime="cold", seed=1)
    assert set(cold.y_pool) == set(cold.y_test) == {0, 1, 2}
    assert cold.n_pool + cold.y_test.size == 300 and cold.y_test.size == 90
    assert np.sort(cold.y_pool[cold.initial_labeled]).tolist() == [0, 1, 2]  # exactly one per class
    warm = make_task(X, y, regime="warm", n_warm=15, seed=1)
    assert warm.initial_labeled.size == 15 and np.unique(warm.initial_labeled).size == 15
    np.testing.assert_array_equal(cold.X_pool, warm.X_pool)  # same seed, same split
    small = make_task(X, y, max_pool=50, seed=1)
    assert small.n_pool == 50 and set(small.y_pool) == {0, 1, 2}


def test_make_task_same_seed_identical() -> None:
    X, y = _three_class_data()
    a, b = make_task(X, y, regime="warm", seed=9), make_task(X, y, regime="warm", seed=9)
    np.testing.assert_array_equal(a.X_pool, b.X_pool)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    np.testing.assert_array_equal(a.initial_labeled, b.initial_labeled)
    assert a.model == b.model
    c = make_task(X, y, regime="warm", seed=10)
    assert not np.array_equal(a.initial_labeled, c.initial_labeled)


def test_make_task_string_labels_and_table() -> None:
    frame = _table(80)
    task = make_task(frame.drop(columns=["target"]), frame["target"].to_numpy(), seed=0)
    assert task.classes.tolist() == ["no", "yes"]
    assert task.n_features == 2 + 3 and np.isfinite(task.X_pool).all()
    assert task.y_pool.dtype == np.int64 and set(task.y_pool) == {0, 1}


def test_make_task_errors() -> None:
    X = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(InvalidInputError, match="two classes"):
        make_task(X, np.zeros(20))
    with pytest.raises(InvalidInputError, match="single record"):
        make_task(X, np.r_[np.zeros(19), 1])
    with pytest.raises(InvalidInputError, match="missing labels"):
        make_task(X, np.r_[np.zeros(10), np.ones(9), np.nan])
    with pytest.raises(InvalidInputError, match="regime"):
        initial_labeled_set(np.array([0, 1, 0, 1]), "lukewarm")


# ---------------------------------------------------------------------------------------------
# Model zoo
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_fits_and_predicts_proba(name: str) -> None:
    X, y = _three_class_data(150)
    task = make_task(X, y, model=name, regime="warm", n_warm=30, seed=0)
    model = task.model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(task.X_pool[task.initial_labeled], task.y_pool[task.initial_labeled])
    proba = model.predict_proba(task.X_test)
    assert proba.shape == (task.y_test.size, np.unique(task.y_pool[task.initial_labeled]).size)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-8)
    assert type(make_model(name, random_state=0)) is type(model)


# ---------------------------------------------------------------------------------------------
# Task suites
# ---------------------------------------------------------------------------------------------
def _strip(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in ("name", "description")}


def test_synthetic_toml_equals_default_suite() -> None:
    assert _strip(load_task_suite("synthetic").to_dict()) == _strip(default_task_suite().to_dict())
    assert _strip(TaskSuite.from_toml(ENVS / "synthetic.toml").to_dict()) == _strip(default_task_suite().to_dict())
    settings = default_task_suite().settings
    assert settings.models == ("logreg", "rf", "nb", "knn") and settings.max_pool == 1000


def test_suite_files_load_and_sample() -> None:
    smoke = TaskSuite.from_toml(ENVS / "smoke.toml")
    assert smoke.name == "smoke"
    tasks = smoke.tasks(12, seed=0)
    assert len(tasks) == 12
    for t in tasks:
        assert 100 <= t.n_pool <= 200 and t.label_budget == 10 and t.batch_size in (1, 2)
        assert t.model.name in ("logreg", "nb") and t.regime in ("cold", "warm")
        assert set(t.y_pool) == set(t.y_test) == set(range(t.n_classes))
    assert {t.regime for t in tasks} == {"cold", "warm"}
    assert len({t.info["dataset"]["generator"] for t in tasks}) >= 3
    if default_data_dir() is None:
        pytest.skip("no data folder for synthetic_and_train.toml")
    mixed = TaskSuite.from_toml(ENVS / "synthetic_and_train.toml")
    folder_source = mixed.sources[-1]
    assert folder_source.kind == "folder" and folder_source.split == "train" and folder_source.path == "$DATA_DIR"
    kinds = {t.info["source_kind"] for t in mixed.tasks(8, seed=3)}
    assert kinds == {"generator", "folder"}


def test_suite_tasks_deterministic() -> None:
    suite = load_task_suite("smoke")
    a, b = suite.tasks(5, seed=42), suite.tasks(5, seed=42)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.X_pool, y.X_pool)
        np.testing.assert_array_equal(x.initial_labeled, y.initial_labeled)
        assert (x.name, x.model, x.label_budget, x.batch_size, x.seed) == (y.name, y.model, y.label_budget, y.batch_size, y.seed)
    prefix = suite.tasks(2, seed=42)
    assert [t.name for t in prefix] == [t.name for t in a[:2]]
    stream = suite.iter_tasks(42)
    assert [next(stream).name for _ in range(3)] == [t.name for t in a[:3]]
    assert [t.name for t in suite.tasks(5, seed=43)] != [t.name for t in a]


def test_suite_round_trip_and_names(tmp_path: Path) -> None:
    suite = default_task_suite()
    again = TaskSuite.from_dict(suite.to_dict())
    assert again.to_dict() == suite.to_dict()
    assert {"default", "synthetic", "smoke", "synthetic_and_train"} <= set(list_task_suites())
    assert load_task_suite(suite) is suite
    with pytest.raises(UnknownNameError, match="smoke"):
        load_task_suite("no-such-suite")
    with pytest.raises(TaskSuiteError, match="does not exist"):
        load_task_suite(str(tmp_path / "missing.toml"))


_BASE = 'name = "t"\n[settings]\nmodels = ["logreg"]\n[[sources]]\nkind = "generator"\n'


@pytest.mark.parametrize(
    "text, field",
    [
        ('nmae = "x"\n' + _BASE, "unknown key"),
        ('name = "t"\n[settings]\nmodel = ["logreg"]\n[[sources]]\nkind = "generator"\n', "settings"),
        ('[settings]\nmodels = ["perceptron"]\n[[sources]]\nkind = "generator"\n', "settings.models"),
        ('[settings]\nregimes = ["hot"]\n[[sources]]\nkind = "generator"\n', "settings.regimes"),
        ("[settings]\nlabel_budgets = [0]\n[[sources]]\nkind = \"generator\"\n", "settings.label_budgets"),
        ("[settings]\nbatch_sizes = [\"2\"]\n[[sources]]\nkind = \"generator\"\n", "settings.batch_sizes"),
        ("[settings]\ntest_size = 1.5\n[[sources]]\nkind = \"generator\"\n", "settings.test_size"),
        ("[settings]\nn_warm = 1\n[[sources]]\nkind = \"generator\"\n", "settings.n_warm"),
        ("[settings]\nmax_pool = 3\n[[sources]]\nkind = \"generator\"\n", "settings.max_pool"),
        ('name = "t"\n', "sources"),
        ('[[sources]]\nkind = "openml"\n', r"sources\[0\].kind"),
        ('[[sources]]\nkind = "generator"\ngenerator = "spirals"\n', r"sources\[0\].generator"),
        ('[[sources]]\nkind = "generator"\nweight = -1\n', r"sources\[0\].weight"),
        ('[[sources]]\nkind = "generator"\nn_samples = [500, 100]\n', r"sources\[0\].n_samples"),
        ('[[sources]]\nkind = "generator"\nn_samples = [5, 100]\n', r"sources\[0\].n_samples"),
        ('[[sources]]\nkind = "generator"\ngenerator = "moons"\nparams = {factor = 0.5}\n', r"sources\[0\].params"),
        ('[[sources]]\nkind = "generator"\ngenerator = "moons"\nparams = {noise = -2.0}\n', r"sources\[0\].params"),
        ('[[sources]]\nkind = "generator"\nparams = {noise = 0.1}\n', r"sources\[0\].params"),
        ('[[sources]]\nkind = "generator"\npath = "x"\n', r"sources\[0\].*unknown key"),
        ('[[sources]]\nkind = "sklearn"\nnames = ["mnist"]\n', r"sources\[0\].names"),
        ('[[sources]]\nkind = "folder"\npath = "no/such/folder"\n', r"sources\[0\].path"),
        ('[[sources]]\nkind = "folder"\n', r"sources\[0\].path"),
        ('[[sources]]\nkind = "file"\npath = "missing.csv"\n', r"sources\[0\].path"),
        ("this is = = not toml", "not valid TOML"),
    ],
)
def test_suite_validation_errors(tmp_path: Path, text: str, field: str) -> None:
    path = _write(tmp_path / "bad.toml", text)
    with pytest.raises(TaskSuiteError, match=field):
        TaskSuite.from_toml(path)


def test_suite_folder_source_split_and_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _manifest_folder(tmp_path)
    bad_split = '[[sources]]\nkind = "folder"\npath = "data"\nsplit = "test"\n'
    with pytest.raises(TaskSuiteError, match=r"sources\[0\].split.*train, validation"):
        TaskSuite.from_toml(_write(tmp_path / "a.toml", bad_split))
    good = '[settings]\nlabel_budgets = [5]\n[[sources]]\nkind = "folder"\npath = "data"\nsplit = "train"\n'
    suite = TaskSuite.from_toml(_write(tmp_path / "b.toml", good))
    assert suite.sources[0].resolved_path == tmp_path / "data"
    assert suite.sources[0].dataset_names == ("alpha", "gamma")
    assert {t.name for t in suite.tasks(6, seed=0)} == {"alpha", "gamma"}
    monkeypatch.setenv("METALEARN_DATA_DIR", str(tmp_path / "data"))
    env_suite = TaskSuite.from_dict({"sources": [{"kind": "folder", "path": "$DATA_DIR", "split": "validation"}]})
    assert env_suite.sources[0].resolved_path == tmp_path / "data"
    assert env_suite.sample_task(np.random.default_rng(0)).name == "beta"


def test_suite_caches_real_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import metalearn.tasks.suite as suite_module

    calls: list[str] = []
    original = suite_module.load_table

    def counting(path, label_column=None, **kw):  # type: ignore[no-untyped-def]
        calls.append(str(path))
        return original(path, label_column, **kw)

    monkeypatch.setattr(suite_module, "load_table", counting)
    _table(60).to_csv(tmp_path / "one.csv", index=False)
    suite = TaskSuite.from_dict({"sources": [{"kind": "file", "path": "one.csv"}]}, base_dir=tmp_path)
    assert calls == []  # lazy: nothing read at load time
    tasks = suite.tasks(4, seed=0)
    assert len(calls) == 1 and all(t.name == "one" for t in tasks)


def test_suite_skips_datasets_with_tiny_classes(tmp_path: Path) -> None:
    frame = _table(60)
    frame.loc[0, "target"] = "rare"  # a class with a single record cannot be split
    frame.to_csv(tmp_path / "tiny.csv", index=False)
    only_bad = TaskSuite.from_dict({"sources": [{"kind": "file", "path": "tiny.csv"}]}, base_dir=tmp_path)
    with pytest.raises(TaskSuiteError, match="smallest class has 1 record"):
        only_bad.sample_task(np.random.default_rng(0))
    mixed = TaskSuite.from_dict(
        {
            "sources": [
                {"kind": "file", "path": "tiny.csv", "weight": 3.0},
                {"kind": "generator", "generator": "moons", "n_samples": [60, 80]},
            ]
        },
        base_dir=tmp_path,
    )
    tasks = mixed.tasks(6, seed=1)
    assert all(t.name.startswith("moons") for t in tasks)
    assert any(t.info["attempt"] > 0 for t in tasks)
    assert [t.name for t in tasks] == [t.name for t in mixed.tasks(6, seed=1)]


def test_suite_sklearn_source() -> None:
    suite = TaskSuite.from_dict(
        {"settings": {"models": ["nb"], "max_pool": 100}, "sources": [{"kind": "sklearn", "names": ["iris", "wine"]}]}
    )
    tasks = suite.tasks(4, seed=0)
    assert {t.name for t in tasks} <= {"iris", "wine"}
    assert all(t.n_pool == 100 and t.n_classes == 3 for t in tasks)


def test_dataset_dataclass() -> None:
    ds = Dataset("d", pd.DataFrame({"a": [1, 2, 3]}), np.array(["x", "y", "x"]))
    assert (ds.n_samples, ds.n_features, ds.n_classes) == (3, 1, 2)
    assert ds.class_counts().to_dict() == {"x": 2, "y": 1}


def test_svm_gives_probabilities_from_one_label_per_class_and_calibrates_later():
    import warnings

    from metalearn.tasks.models import PlattSVC

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = np.digitize(X[:, 0], [-0.5, 0.5])  # three classes
    one_each = np.array([np.flatnonzero(y == c)[0] for c in range(3)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecated SVC(probability=True) underneath
        cold = PlattSVC(random_state=0).fit(X[one_each], y[one_each])
        warm = PlattSVC(random_state=0).fit(X, y)
    for model in (cold, warm):
        proba = model.predict_proba(X)
        assert proba.shape == (60, 3)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
        np.testing.assert_array_equal(model.predict(X), model.classes_[proba.argmax(axis=1)])
    assert (warm.predict(X) == y).mean() > 0.8


def test_sklearn_default_models_are_configured_as_users_configure_them() -> None:
    # hgb_sklearn is scikit-learn's HistGradientBoosting at its defaults: 20 records per leaf, so
    # with few labels it gives every record the same probabilities (the zoo's hgb does not).
    X, y = _three_class_data(150)
    labeled = np.concatenate([np.flatnonzero(y == c)[:5] for c in np.unique(y)])
    constant = make_model("hgb_sklearn", random_state=0, max_iter=5).fit(X[labeled], y[labeled])
    fitted = make_model("hgb", random_state=0, max_iter=5).fit(X[labeled], y[labeled])
    assert np.ptp(constant.predict_proba(X), axis=0).max() == 0.0
    assert np.ptp(fitted.predict_proba(X), axis=0).max() > 0.0
    assert make_model("mlp_sklearn").get_params()["hidden_layer_sizes"] == (100,)
    assert make_model("knn_sklearn").get_params()["weights"] == "uniform"


def test_simulated_fits_do_not_repeat_convergence_warnings() -> None:
    """scikit-learn's MLP at its defaults stops at max_iter on few labels; a training job fits it
    thousands of times, so the simulator keeps the warning out of the user's terminal."""
    import warnings

    from sklearn.datasets import make_classification
    from sklearn.exceptions import ConvergenceWarning

    from metalearn.simulation.loop import simulate
    from metalearn.strategies import make_strategy
    from metalearn.tasks.task import make_task

    X, y = make_classification(n_samples=200, n_features=6, random_state=0)
    task = make_task(X, y, model="mlp_sklearn", label_budget=10, batch_size=5, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        simulate(task, make_strategy("margin", random_state=0))
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    # The warning exists in this setting: the model fitted directly raises it.
    with warnings.catch_warnings(record=True) as direct:
        warnings.simplefilter("always")
        task.model().fit(X[:10], y[:10])
    assert [w for w in direct if issubclass(w.category, ConvergenceWarning)]
