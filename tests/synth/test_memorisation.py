"""The memorisation check: its arithmetic, its two controls, and where its answer goes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from helpers import quiet, run_config
from rxwgan.base.errors import RxwganError
from rxwgan.cli import main
from rxwgan.data.phantoms import write_demo_data
from rxwgan.metrics.nearest_neighbours import memorisation_scores, nearest
from rxwgan.synth.memorisation import check_memorisation
from rxwgan.train.run_info import read_run


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny generator trained briefly on 160 phantoms at 32 px, in a study-shaped folder."""
    root = tmp_path_factory.mktemp("memo")
    table = write_demo_data(root / "data", n_images=160, size=32)
    from rxwgan.train.loop import train

    folder = root / "study" / "fold_0" / "target_1"
    train(run_config(table, folder, epochs=2), log=quiet)
    return folder


@pytest.fixture(scope="module")
def unseen_phantoms(tmp_path_factory) -> torch.Tensor:
    """Real target-1 phantoms no run saw (another seed): the negative control."""
    from rxwgan.metrics.sources import table_images

    table = write_demo_data(tmp_path_factory.mktemp("other") / "data", n_images=80, size=32, seed=1)
    return table_images(table, 32, target=1).images


def test_nearest_matches_a_brute_force_search_across_chunks():
    generator = torch.Generator().manual_seed(0)
    queries, reference = torch.randn(37, 5, generator=generator), torch.randn(11, 5, generator=generator)
    distance, index = nearest(queries, reference, chunk=8)
    full = torch.cdist(queries.double(), reference.double())
    assert torch.equal(index, full.argmin(1))
    assert torch.allclose(distance, full.min(1).values)
    own, own_index = nearest(reference, reference, exclude_self=True, chunk=4)
    assert not torch.any(own_index == torch.arange(11))
    assert torch.all(own > 0)


def test_an_exact_copy_has_distance_zero_not_rounding_error():
    reference = torch.rand(4, 1, 64, 64) * 100
    distance, index = nearest(reference[[2, 0]], reference)
    assert index.tolist() == [2, 0] and distance.tolist() == [0.0, 0.0]


def test_authenticity_is_alaa_et_als_nearest_neighbour_rule():
    # Training points 0, 1 and 10: their nearest other training points are 1, 1 and 9 away.
    train = torch.tensor([[0.0], [1.0], [10.0]])
    # 0.1 is closer to 0 than 1 is (unauthentic); 5 is 4 from 1, whose own gap is 1 (authentic);
    # 9.5 is 0.5 from 10, whose gap is 9 (unauthentic).
    synthetic = torch.tensor([[0.1], [5.0], [9.5]])
    unseen = torch.tensor([[3.0], [4.0], [6.0], [7.0]])
    scores, (distance, index) = memorisation_scores(synthetic, train, unseen)
    assert scores["authenticity"] == pytest.approx(1 / 3)
    assert index.tolist() == [0, 1, 2] and distance.tolist() == pytest.approx([0.1, 4.0, 0.5])
    # Unseen distances 2, 3, 4, 3: the 5% quantile is the smallest; 0.1 and 0.5 are under it.
    assert scores["threshold"] == pytest.approx(2.0)
    assert scores["near_copies"] == pytest.approx(2 / 3)
    assert scores["near_copies_unseen"] == pytest.approx(1 / 4)


def test_noisy_copies_of_the_training_images_are_flagged(run):
    train = read_run(run).images("train").images
    noise = torch.randn(train.shape, generator=torch.Generator().manual_seed(0))
    copies = (train + 0.02 * noise).clamp(-1, 1)
    record = check_memorisation(run, copies)
    for scores in record["scores"].values():
        assert scores["near_copies"] > 0.9
        assert scores["authenticity"] < 0.1
    assert record["flagged"]


def test_unseen_real_images_are_not_flagged(run, unseen_phantoms):
    record = check_memorisation(run, unseen_phantoms)
    for scores in record["scores"].values():
        assert scores["near_copies"] < 0.2
        assert scores["authenticity"] > 0.3
    assert not record["flagged"]


def test_every_number_names_its_space_and_the_three_set_sizes(run):
    info = read_run(run)
    record = check_memorisation(run, run / "generator_trained.safetensors", n=40, pairs=run / "pairs.png")
    assert record["n_synthetic"] == 40
    assert record["n_train"] == len(info.rows("train")) and record["n_unseen"] == len(info.rows("val"))
    assert record["space_id"].startswith("trained-v1-") and "32 px" in record["pixels"]
    assert record["generator"]["sha256"] and (run / "pairs.png").read_bytes()[:4] == b"\x89PNG"
    split = pd.read_csv(run / "split.csv")
    assert record["n_train"] == int(((split["partition"] == "train") & (split["target"] == 1)).sum())


def test_cli_memorisation_records_in_the_run_and_writes_json(run, tmp_path, capsys):
    out = tmp_path / "memo.json"
    assert main(["evaluate", "--memorisation", str(run), "-n", "30", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "near copies" in printed and "unseen ref" in printed and "not a privacy guarantee" in printed
    saved = json.loads(out.read_text())
    assert saved["n_synthetic"] == 30 and "versions" in saved
    assert json.loads((run / "memorisation.json").read_text())["n_synthetic"] == 30
    assert (run / "memorisation_pairs.png").is_file()


@pytest.mark.parametrize("flags, message", [
    (["--memorisation", "{tmp}"], "not a run folder (config.json and split.csv missing"),
    (["--memorisation", "{run}", "--real", "x.csv"], "drop --real"),
    (["--memorisation", "{run}", "--partition", "train"], "the unseen rows are the run's val or test"),
    (["--fake", "g.safetensors"], "--real is required"),
    (["--real", "r.csv", "--fake", "g.safetensors", "--table", "t.csv"], "--table says where the table of"),
])
def test_cli_memorisation_user_errors_are_one_line(run, tmp_path, capsys, flags, message):
    flags = [flag.format(tmp=tmp_path, run=run) for flag in flags]
    assert main(["evaluate", *flags]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1


def test_memorisation_is_refused_as_an_epoch_metric(run, tmp_path):
    from rxwgan.train.loop import train

    config = run_config(Path(read_run(run).config.input), tmp_path / "r", eval_for_each=1,
                        eval_metrics=("memorisation",))
    with pytest.raises(RxwganError, match="not an epoch metric"):
        train(config, log=quiet)


def test_generate_writes_a_card_and_checks_memorisation(run, tmp_path, capsys):
    out = tmp_path / "synthetic"
    flags = ["generate", "-g", str(run / "generator_trained.safetensors"), "-n", "20", "-o", str(out),
             "--no-progress"]
    assert main(flags) == 0
    card = (out / "CARD.md").read_text()
    from rxwgan.models import file_sha256

    assert file_sha256(run / "generator_trained.safetensors") in card
    assert str(run) in card and read_run(run).record["table_sha256"] in card
    assert "fold_0" in card and "val_kl_rf" in card and "torch" in card
    (run / "memorisation.json").unlink(missing_ok=True)
    assert main(flags) == 0
    assert "Not computed" in (out / "CARD.md").read_text()
    assert main([*flags, "--check-memorisation"]) == 0
    printed = capsys.readouterr().out
    assert "memorisation not flagged (20 synthetic" in printed
    card = (out / "CARD.md").read_text()
    assert "near copies" in card and "20 synthetic" in card
    assert json.loads((out / "memorisation.json").read_text())["n_synthetic"] == 20
    assert (out / "memorisation_pairs.png").is_file()
    assert json.loads((run / "memorisation.json").read_text())["n_synthetic"] == 20


def test_check_memorisation_outside_a_run_is_refused_before_writing(run, tmp_path, capsys):
    loose = tmp_path / "loose.safetensors"
    loose.write_bytes((run / "generator_trained.safetensors").read_bytes())
    out = tmp_path / "synthetic"
    assert main(["generate", "-g", str(loose), "-n", "4", "-o", str(out), "--check-memorisation"]) == 2
    assert "is not in a run folder" in capsys.readouterr().err
    assert not out.exists()


def test_a_card_written_by_someone_else_is_not_replaced(run, tmp_path, capsys):
    out = tmp_path / "synthetic"
    out.mkdir()
    (out / "CARD.md").write_text("my notes")
    generator = str(run / "generator_trained.safetensors")
    assert main(["generate", "-g", generator, "-n", "4", "-o", str(out)]) == 2
    assert "was not written by rxwgan" in capsys.readouterr().err
    assert (out / "CARD.md").read_text() == "my notes"


def test_report_shows_a_runs_recorded_memorisation(run):
    from rxwgan.report.collect import collect_runs

    check = check_memorisation(run, run / "generator_trained.safetensors", n=20)
    (run / "memorisation.json").write_text(json.dumps(check))
    row = collect_runs(run.parents[1]).set_index("run").loc["fold_0/target_1"]
    assert row["near_copies"] == check["scores"]["features"]["near_copies"]
    assert "20 synthetic" in row["memorisation"]
    stale = {**check, "generator": {"sha256": "0" * 64}}
    (run / "memorisation.json").write_text(json.dumps(stale))
    assert "near_copies" not in collect_runs(run.parents[1]).columns
