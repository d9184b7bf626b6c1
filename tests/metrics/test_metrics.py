"""rxwgan.metrics and ``rxwgan evaluate`` on phantom X-rays: behaviour, not implementation.

One table of 200 phantoms at 64 px and one trained encoder serve the whole module (both
built once, in their own cache folder).
"""

from __future__ import annotations

import json
import math
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from helpers import write_png
from rxwgan.base.errors import RxwganError
from rxwgan.cli import main
from rxwgan.data.phantoms import write_demo_data
from rxwgan.data.splits import SplitSpec, partition
from rxwgan.metrics import compute_metrics, evaluate_generator, space_builder, space_registry
from rxwgan.metrics import encoder as encoder_module
from rxwgan.metrics.histogram_divergences import pair_divergences
from rxwgan.metrics.sources import folder_images, load_images, sample_generator, table_images
from rxwgan.metrics.stats_cache import FeatureCache, images_md5
from rxwgan.models import build_generator, save_model

SIZE = 64


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantoms")
    csv = write_demo_data(root / "data", n_images=200, size=SIZE, seed=0)
    cache = root / "cache"
    real = table_images(csv, SIZE, cache_dir=cache)
    return types.SimpleNamespace(csv=csv, cache=cache, real=real, images=real.images)


@pytest.fixture(scope="module")
def trained(phantoms):
    space, _ = space_builder.resolve_space("trained", phantoms.real.fit_images, phantoms.real.fit_labels,
                                      seed=0, cache_dir=phantoms.cache)
    return space


def halves(images: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    half = len(images) // 2
    return images[order[:half]], images[order[half:]]


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``sigma`` pixels (reflecting borders)."""
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-taps**2 / (2 * sigma**2))
    kernel /= kernel.sum()
    x = F.pad(x, (radius,) * 4, mode="reflect")
    return F.conv2d(F.conv2d(x, kernel.view(1, 1, 1, -1)), kernel.view(1, 1, -1, 1))


def shift(x: torch.Tensor, dx: int = 0, dy: int = 0) -> torch.Tensor:
    """Move the content right by dx and down by dy pixels, repeating the border row/column."""
    x = F.pad(x, (dx, 0, dy, 0), mode="replicate")
    return x[..., : x.shape[-2] - dy, : x.shape[-1] - dx]


def noise(x: torch.Tensor, std: float) -> torch.Tensor:
    return (x + std * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)


def brighter(x: torch.Tensor, amount: float) -> torch.Tensor:
    return (x + amount).clamp(-1, 1)


def metrics_of(real, fake, space, names=("fid", "kid", "pr", "dc")):
    return compute_metrics(real, fake, list(names), space, cache=False)


# --- the numbers themselves -----------------------------------------------------------

def test_identical_sets_have_no_distance_and_full_overlap(phantoms, trained):
    images = phantoms.images
    same = metrics_of(images, images.clone(), trained)
    blurred = metrics_of(images, blur(images, 1.0), trained, ["fid", "kid"])
    assert abs(same["fid"]) < 1e-6 * blurred["fid"]  # 0 up to the eigenvalue solver's rounding
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    assert same["density"] == pytest.approx(1.0, abs=0.05)
    # KID's subsets of one set share images, which biases it slightly below 0 (by about
    # 2 (E k(x,x) - E k(x,y)) / n): "about 0" next to what a visible defect scores.
    assert abs(same["kid"]) < 0.01 * blurred["kid"]
    assert same["n_real"] == same["n_fake"] == len(images)


@pytest.mark.parametrize("defect", ["blur 1 px", "shift 4 px right", "shift 4 px down"])
def test_small_defects_score_five_std_above_the_real_floor(phantoms, trained, defect):
    a, b = halves(phantoms.images)
    degraded = {"blur 1 px": lambda x: blur(x, 1.0), "shift 4 px right": lambda x: shift(x, dx=4),
                "shift 4 px down": lambda x: shift(x, dy=4)}[defect](b)
    floor = metrics_of(a, b, trained, ["kid"])
    worse = metrics_of(a, degraded, trained, ["kid"])
    spread = math.hypot(floor["kid_std"], worse["kid_std"])
    assert worse["kid"] - floor["kid"] >= 5 * spread, (defect, floor, worse)


@pytest.mark.parametrize("degrade, steps", [(blur, [0.5, 1.0, 2.0]), (noise, [0.05, 0.1, 0.2]),
                                            (brighter, [0.05, 0.1, 0.2])],
                         ids=["blur", "noise", "intensity"])
def test_metrics_worsen_step_by_step(phantoms, trained, degrade, steps):
    a, b = halves(phantoms.images)
    results = [metrics_of(a, b, trained)] + [metrics_of(a, degrade(b, s), trained) for s in steps]
    for key in ("fid", "kid"):
        values = [r[key] for r in results]
        assert values == sorted(values) and len(set(values)) == len(values), (key, values)
    for key in ("precision", "recall", "density", "coverage"):
        values = [r[key] for r in results]
        pairs = zip(values, values[1:], strict=False)
        assert all(later <= earlier + 0.02 for earlier, later in pairs), (key, values)
        assert values[-1] < values[0] - 0.1, (key, values)


def test_brightening_raises_the_old_histogram_divergences(phantoms):
    a, b = halves(phantoms.images)
    results = [compute_metrics(a, brighter(b, s), ["hist"]) for s in (0.0, 0.1, 0.3)]
    for key in ("kl_rf", "js_rf", "l1_rf", "l2_rf"):
        values = [r[key] for r in results]
        assert values == sorted(values) and values[0] < values[-1], (key, values)
    assert results[0]["kl_rr"] == results[2]["kl_rr"]  # the real spread does not depend on the fakes


def test_histogram_metrics_are_the_old_pair_divergences(phantoms):
    a, b = halves(phantoms.images[:40])
    got = compute_metrics(a, b, ["hist"])
    want = pair_divergences((a + 1) / 2, (b + 1) / 2)
    assert {k: got[k] for k in want} == pytest.approx(want)
    assert got["hist_n"] == len(a) and "features" not in got


def test_a_trained_space_tells_the_classes_apart(phantoms, trained):
    """In-domain: TB phantoms against no-TB phantoms is far from TB against TB."""
    tb = phantoms.images[torch.as_tensor(phantoms.real.fit_labels == 1)]
    normal = phantoms.images[torch.as_tensor(phantoms.real.fit_labels == 0)]
    floor = metrics_of(tb[:50], tb[50:], trained, ["kid"])
    wrong = metrics_of(tb[:50], normal[:50], trained, ["kid"])
    assert wrong["kid"] - floor["kid"] >= 5 * math.hypot(floor["kid_std"], wrong["kid_std"])


def test_few_real_images_flag_fid_and_report_sample_sizes(phantoms, trained):
    result = compute_metrics(phantoms.images[:30], phantoms.images[100:160], ["fid", "kid"], trained,
                             cache=False)
    assert (result["n_real"], result["n_fake"], result["feature_dim"]) == (30, 60, trained.dim)
    assert result["kid_subset_size"] == 15
    assert any("rank-deficient" in note and "KID" in note for note in result["notes"])
    more = torch.cat([phantoms.images, phantoms.images.flip(-1)])  # 400 > 248 dimensions
    big = compute_metrics(more, more.flip(-2), ["fid"], trained, cache=False)
    assert not any("rank-deficient" in note for note in big["notes"])


def test_unknown_metric_names_the_available_ones(phantoms):
    with pytest.raises(RxwganError, match="unknown metric.*nope.*available: fid, kid, pr, dc, hist"):
        compute_metrics(phantoms.images[:8], phantoms.images[8:16], ["kid", "nope"], "random")


def test_single_keys_and_prdc_select_their_metrics(phantoms):
    result = compute_metrics(phantoms.images[:40], phantoms.images[40:80], ["coverage", "prdc"], "random",
                             cache=False)
    assert {"precision", "recall", "density", "coverage"} <= set(result) and "fid" not in result


# --- caches -----------------------------------------------------------------------------

def test_feature_cache_gives_the_same_numbers_as_no_cache(phantoms, trained):
    spec = SplitSpec(fold=1, n_splits=5)
    fake = blur(phantoms.images[:60], 0.5)
    kwargs = dict(metrics=["fid", "kid", "pr", "dc"], features=trained, cache_dir=phantoms.cache,
                  split=spec, target=1)
    first = compute_metrics(phantoms.csv, fake, **kwargs)
    real = table_images(phantoms.csv, SIZE, split=spec, target=1, cache_dir=phantoms.cache).images
    entry = FeatureCache(phantoms.cache).entry(trained.key, images_md5(real))
    assert entry.is_file()
    second = compute_metrics(phantoms.csv, fake, **kwargs)
    uncached = compute_metrics(phantoms.csv, fake, **{**kwargs, "cache": False})
    numbers = lambda r: {k: v for k, v in r.items() if isinstance(v, (int, float))}  # noqa: E731
    assert numbers(first) == numbers(second) == numbers(uncached)


def test_feature_cache_reads_instead_of_recomputing_and_rebuilds_damage(tmp_path):
    cache = FeatureCache(tmp_path)
    values = torch.randn(5, 3, dtype=torch.float64)
    got, hit = cache.get_or_compute("space", "abc", lambda: values)
    assert not hit and torch.equal(got, values)
    got, hit = cache.get_or_compute("space", "abc", lambda: pytest.fail("recomputed"))
    assert hit and torch.equal(got, values)
    cache.entry("space", "abc").write_bytes(b"not a safetensors file")
    got, hit = cache.get_or_compute("space", "abc", lambda: values * 2)
    assert not hit and torch.equal(got, values * 2)


def test_trained_encoder_is_cached_per_content_and_seed(phantoms, tmp_path, monkeypatch):
    images = F.interpolate(phantoms.images[:24], size=32, mode="area")
    labels = phantoms.real.fit_labels[:24]
    first, _ = space_builder.resolve_space("trained", images, labels, seed=0, cache_dir=tmp_path)
    assert first.info["objective"] == "tb-classifier+flip"
    space_builder._MEMO.clear()
    monkeypatch.setattr(encoder_module, "train_encoder", lambda *a, **k: pytest.fail("trained again"))
    again, _ = space_builder.resolve_space("trained", images.clone(), labels, seed=0, cache_dir=tmp_path)
    assert again.key == first.key
    assert torch.equal(again(images), first(images))
    with pytest.raises(pytest.fail.Exception, match="trained again"):
        space_builder.resolve_space("trained", images, labels, seed=1, cache_dir=tmp_path)
    with pytest.raises(pytest.fail.Exception, match="trained again"):
        space_builder.resolve_space("trained", images, 1 - labels, seed=0, cache_dir=tmp_path)


def test_one_class_trains_the_self_supervised_objective_only(phantoms, tmp_path):
    one_class = F.interpolate(phantoms.images[:20], size=32, mode="area")
    space, _ = space_builder.resolve_space("trained", one_class, np.ones(20, dtype=int), seed=0,
                                      cache_dir=tmp_path)
    assert space.info["objective"] == "flip" and space.info["class_accuracy"] is None


def test_encoder_training_leaves_the_global_rng_alone(phantoms):
    before = torch.get_rng_state()
    encoder_module.train_encoder(phantoms.images[:8, :, ::4, ::4], None, seed=3, steps=2)
    assert torch.equal(torch.get_rng_state(), before)


# --- pretrained spaces: clear messages when they cannot be used ---------------------------

@pytest.fixture
def no_downloads_here(monkeypatch, tmp_path):
    """No weights anywhere, and the optional packages reported absent unless a test says so."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(space_registry.XRV_WEIGHTS_ENV, raising=False)
    monkeypatch.delenv(space_registry.INCEPTION_WEIGHTS_ENV, raising=False)
    installed: dict[str, object] = {}

    def fake_import(module):
        package = module.split(".")[0]
        if package in installed:
            return installed[package], ""
        return None, f"{package} is not installed"

    monkeypatch.setattr(space_builder, "_import_optional", fake_import)
    space_builder._MEMO.clear()
    return installed


def test_xrv_without_package_or_weights_says_what_is_missing_and_where_to_put_it(no_downloads_here):
    with pytest.raises(RxwganError) as info:
        space_builder.resolve_space("xrv")
    message = str(info.value)
    assert "\n" not in message
    for part in ("torchxrayvision is not installed", "pip install torchxrayvision", "--weights PATH",
                 space_registry.XRV_WEIGHTS_FILE, space_registry.XRV_WEIGHTS_ENV, ".torchxrayvision"):
        assert part in message


def test_xrv_with_package_but_no_weights_asks_only_for_the_weights(no_downloads_here, tmp_path):
    no_downloads_here["torchxrayvision"] = types.SimpleNamespace()
    with pytest.raises(RxwganError) as info:
        space_builder.resolve_space("xrv", weights=tmp_path / "nowhere.pt")
    message = str(info.value)
    assert "pip install" not in message
    assert str(tmp_path / "nowhere.pt") in message and space_registry.XRV_WEIGHTS_ENV in message


def test_inception_without_package_or_weights_says_so(no_downloads_here, monkeypatch, tmp_path):
    monkeypatch.setenv(space_registry.INCEPTION_WEIGHTS_ENV, str(tmp_path / "weights"))
    with pytest.raises(RxwganError) as info:
        space_builder.resolve_space("inception")
    message = str(info.value)
    for part in ("pip install torch-fidelity", space_registry.INCEPTION_WEIGHTS_FILE,
                 space_registry.INCEPTION_WEIGHTS_ENV, str(tmp_path / "weights")):
        assert part in message


def test_auto_falls_back_to_trained_and_says_why(no_downloads_here, phantoms):
    space, note = space_builder.resolve_space("auto", phantoms.real.fit_images, phantoms.real.fit_labels,
                                         seed=0, cache_dir=phantoms.cache)
    assert space.name == "trained"
    assert note == "features: trained (auto: torchxrayvision is not installed)"


class _TinyDenseNet(nn.Module):
    """Stands in for torchxrayvision's DenseNet: a ``features`` trunk that records its input."""

    def __init__(self, weights=None):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1))
        self.seen: list[torch.Tensor] = []
        self.features.register_forward_pre_hook(lambda _, args: self.seen.append(args[0]))


def test_xrv_space_loads_the_trunk_and_feeds_it_224_px_in_its_range(no_downloads_here, tmp_path,
                                                                    monkeypatch):
    no_downloads_here["torchxrayvision"] = types.SimpleNamespace(
        models=types.SimpleNamespace(DenseNet=_TinyDenseNet), __version__="test")
    weight = torch.randn(4, 1, 3, 3)
    bias = torch.randn(4)
    folder = tmp_path / "weights"
    folder.mkdir()
    save_file({"features.0.weight": weight, "features.0.bias": bias, "classifier.weight": torch.ones(18, 4)},
              str(folder / "xrv.safetensors"))
    monkeypatch.setenv(space_registry.XRV_WEIGHTS_ENV, str(folder / "xrv.safetensors"))
    space, note = space_builder.resolve_space("auto")
    assert space.name == "xrv" and note.startswith("features: xrv (auto: torchxrayvision weights found")
    images = torch.linspace(-1, 1, 2 * 32 * 32).view(2, 1, 32, 32)
    got = space(images)
    seen = space.model.seen[-1]
    assert seen.shape == (2, 1, 224, 224)
    assert seen.min() == pytest.approx(-1024, abs=30) and seen.max() == pytest.approx(1024, abs=30)
    want = F.relu(F.conv2d(seen, weight, bias, padding=1)).mean(dim=(2, 3))
    assert torch.allclose(got, want.double(), atol=1e-4)


# --- sources ------------------------------------------------------------------------------

def test_a_table_source_selects_one_partition_and_class(phantoms):
    spec = SplitSpec(test=2, sort=3)
    found = table_images(phantoms.csv, SIZE, split=spec, partition="train", target=0,
                         cache_dir=phantoms.cache)
    targets = phantoms.real.fit_labels
    rows = [r for r in partition(targets, spec).train if targets[r] == 0]
    assert torch.equal(found.images, phantoms.images[rows])
    assert len(found.fit_images) == 200 and found.info["partition"] == "train"
    with pytest.raises(RxwganError, match="needs a split"):
        table_images(phantoms.csv, SIZE, partition="val", cache_dir=phantoms.cache)


def test_row_selection_is_refused_for_sets_that_are_not_tables(phantoms):
    with pytest.raises(RxwganError, match="--target select rows of a table, and this set is a tensor"):
        load_images(phantoms.images[:4], SIZE, target=1)


def test_a_folder_source_reads_every_image_under_it(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a.png", "sub/b.png", "sub/c.png"):
        write_png(tmp_path / "imgs" / name, rng.integers(0, 256, (20, 20), dtype=np.uint8))
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    found = folder_images(tmp_path / "imgs", 16, cache_dir=tmp_path / "cache")
    assert found.images.shape == (3, 1, 16, 16)
    assert found.images.min() >= -1 and found.images.max() <= 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(RxwganError, match="no images found"):
        folder_images(tmp_path / "empty", 16)


def test_generator_samples_depend_on_the_seed_only(tmp_path):
    torch.manual_seed(0)
    generator = build_generator("tiny")
    save_model(generator, tmp_path / "g.safetensors")
    one = load_images(tmp_path / "g", 32, n=7, seed=4)
    two = load_images(tmp_path / "g.safetensors", 32, n=7, seed=4)
    other = load_images(tmp_path / "g.safetensors", 32, n=7, seed=5)
    assert one.images.shape == (7, 1, 32, 32)
    assert torch.equal(one.images, two.images) and not torch.equal(one.images, other.images)
    assert one.info["sha256"] == two.info["sha256"]


# --- the training-loop entry point ---------------------------------------------------------

def test_evaluate_generator_returns_flat_numbers_and_leaves_state_alone(phantoms):
    torch.manual_seed(0)
    generator = build_generator("small").train()
    real = phantoms.images[:40]
    rng_before = torch.get_rng_state()
    first = evaluate_generator(generator, real, ["kid", "pr"], features="random", seed=1)
    assert torch.equal(torch.get_rng_state(), rng_before) and generator.training
    assert {"kid", "kid_std", "precision", "recall", "n_real", "n_fake"} <= set(first)
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in first.values())
    assert first["n_real"] == first["n_fake"] == 40
    again = evaluate_generator(generator, real, ["kid", "pr"], features="random", seed=1)
    assert again == first
    other = evaluate_generator(generator, real, ["kid"], features="random", seed=1, n=60)
    assert other["n_fake"] == 60


def test_evaluate_generator_defaults_to_an_in_domain_space(phantoms, no_downloads_here):
    torch.manual_seed(0)
    generator = build_generator("small")
    real = phantoms.images[:32]
    result = evaluate_generator(generator, real, ["kid"])
    samples = sample_generator(generator, 32, 0)
    trained, _ = space_builder.resolve_space("trained", real, None, seed=0)  # fitted on the real images
    assert result == {k: v for k, v in compute_metrics(real, samples, ["kid"], trained).items()
                      if isinstance(v, (int, float))}


def test_a_diverged_generator_gets_nan_not_an_exception(phantoms):
    class Broken(nn.Module):
        latent_dim = 4

        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))

        def forward(self, z):
            return torch.full((len(z), 1, SIZE, SIZE), float("nan")) * self.scale

    result = evaluate_generator(Broken(), phantoms.images[:16], ["kid", "fid"], features="random")
    assert math.isnan(result["kid"]) and math.isnan(result["fid"]) and result["n_fake"] == 16


# --- the command line ----------------------------------------------------------------------

def test_cli_evaluate_prints_sizes_and_writes_json(phantoms, trained, tmp_path, capsys):
    torch.manual_seed(0)
    save_model(build_generator("small"), tmp_path / "gen.safetensors")
    out = tmp_path / "eval.json"
    code = main(["evaluate", "--real", str(phantoms.csv), "--fold", "0", "--n_splits", "5", "--target", "1",
                 "--fake", str(tmp_path / "gen.safetensors"), "-n", "50", "--features", "trained",
                 "--cache-dir", str(phantoms.cache), "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    report = json.loads(out.read_text())
    n_real = report["n_real"]
    rows = partition(phantoms.real.fit_labels, SplitSpec(fold=0, n_splits=5)).val
    assert n_real == int((phantoms.real.fit_labels[rows] == 1).sum()) and report["n_fake"] == 50
    assert {"fid", "kid", "kid_std", "precision", "recall", "density", "coverage", "kl_rf", "l2_rr"} <= set(
        report["metrics"])
    assert report["features"]["key"] == trained.key  # the module's encoder, reused from the cache
    assert {"rxwgan", "torch", "torchmetrics", "prdc"} <= set(report["versions"])
    assert any("rank-deficient" in note for note in report["notes"])
    kid_line = next(line for line in printed.splitlines() if line.startswith("kid "))
    assert kid_line.split()[-2:] == [str(n_real), "50"]
    assert "features: trained" in printed
    assert main(["evaluate", "--real", str(phantoms.csv), "--fake", str(tmp_path / "gen.safetensors"),
                 "--json", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_cli_evaluate_precision_auto_is_fp32_on_a_cpu_and_bf16_samples_stay_close(phantoms, tmp_path):
    torch.manual_seed(0)
    save_model(build_generator("small"), tmp_path / "gen.safetensors")
    runs = {}
    for precision in ("auto", "fp32", "bf16"):
        out = tmp_path / f"{precision}.json"
        assert main(["evaluate", "--real", str(phantoms.csv), "--fake", str(tmp_path / "gen.safetensors"),
                     "-n", "20", "--metrics", "hist", "--device", "cpu", "--precision", precision,
                     "--cache-dir", str(phantoms.cache), "--json", str(out)]) == 0
        runs[precision] = json.loads(out.read_text())["metrics"]
    assert runs["auto"] == runs["fp32"]  # a CPU keeps the numbers it always gave
    assert runs["bf16"] != runs["fp32"]
    generator = build_generator("small")
    fp32, bf16 = (sample_generator(generator, 8, 0, precision=p) for p in ("fp32", "bf16"))
    assert 0 < (fp32 - bf16).abs().max() < 0.1


def test_cli_evaluate_user_errors_are_one_line(phantoms, tmp_path, capsys, no_downloads_here):
    base = ["evaluate", "--real", str(phantoms.csv), "--fake", str(phantoms.csv),
            "--cache-dir", str(phantoms.cache)]
    cases = [(["--metrics", "fid,bogus"], "unknown metric"),
             (["--features", "xrv"], space_registry.XRV_WEIGHTS_ENV),
             (["--fold", "0"], "--n_splits"),
             (["--partition", "val"], "needs a split")]
    for extra, expected in cases:
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, (extra, err)


def test_cli_choices_match_the_package():
    from rxwgan.cli import evaluate as cli_evaluate
    from rxwgan.metrics import DEFAULT_METRICS, FEATURE_SPACES

    assert cli_evaluate.FEATURE_CHOICES == ("auto", *FEATURE_SPACES)
    assert cli_evaluate.DEFAULT_METRICS == DEFAULT_METRICS
