"""Model-zoo tables and figures from hand-written records: best-of-grid selection, formats, merging, failures."""

import json
import math
import os

import pytest

from lmzoo import records, zoo, zoo_costs, zoo_figures, zoo_grid
from lmzoo.records import RECORD_NAME


def write_record(folder, record: dict) -> str:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, RECORD_NAME)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f)
    return path


def glue_record(task="rte", bs=32, lr=5e-5, epochs=3.0, seed=42, score=0.6, metrics=None, **extra) -> dict:
    """A record as run_glue.py writes it (no status key: completed when it has a score)."""
    metrics = metrics if metrics is not None else {"eval_accuracy": score}
    return {"kind": "glue", "task": task, "model": "minilm", "batch_size": bs, "learning_rate": lr,
            "num_train_epochs": epochs, "seed": seed, "max_train_samples": 2000, "max_eval_samples": None,
            "dev_metrics": {**metrics, "eval_combined_score": score}, "combined_score": score, "wall_time_s": 60.0,
            "hardware": {"device": "cpu", "cpu_count": 2}, "finished_at": "2026-01-01T00:00:00", **extra}


def failed_record(task="rte", bs=16, lr=3e-4) -> dict:
    """What the sweep writes for a run that exited non-zero."""
    return {"kind": "glue", "task": task, "model": "minilm", "batch_size": bs, "learning_rate": lr,
            "num_train_epochs": 3.0, "seed": 42, "status": "failed", "exit_code": 1, "log": "run.log",
            "wall_time_s": 5.0}


def pretrain_record(model="bert-tiny", **extra) -> dict:
    return {"kind": "pretrain", "status": "completed", "model": model, "output_dir": f"outputs/{model}",
            "model_type": "bert", "config_name": model, "config_overrides": None, "parameters": 4_385_920,
            "vocab_size": 30522, "corpus": "wiki.train.raw", "block_size": 128, "steps": 1000, "batch_size": 32,
            "learning_rate": 1e-3, "tokens_seen": 4_096_000, "precision": "fp32", "wall_time_s": 900.0,
            "eval_loss": 3.266, "perplexity": math.exp(3.266), "eval_accuracy": 0.4,
            "loss_curve": [{"step": 100, "tokens": 409600, "loss": 6.0}, {"step": 200, "tokens": 819200, "loss": 4.5},
                           {"step": 200, "tokens": 819200, "eval_loss": 4.2}],
            "hardware": {"device": "cpu", "cpu_count": 2}, "finished_at": "2026-01-01T00:00:00", **extra}


@pytest.fixture
def grid_results(tmp_path):
    """RTE over a 2x2 grid (one point failed, one diverged) and MRPC at one point, as a sweep lays them out."""
    root = tmp_path / "results"
    rte = root / "glue" / "minilm" / "rte"
    write_record(rte / "bs16_lr5e-5", glue_record(bs=16, lr=5e-5, score=0.55))
    write_record(rte / "bs32_lr5e-5", glue_record(bs=32, lr=5e-5, score=0.62))
    write_record(rte / "bs16_lr3e-4", failed_record(bs=16, lr=3e-4))
    write_record(rte / "bs32_lr3e-4", glue_record(bs=32, lr=3e-4, score=float("nan"), status="diverged"))
    mrpc_metrics = {"eval_f1": 0.8792, "eval_accuracy": 0.8309}
    write_record(root / "glue" / "minilm" / "mrpc" / "bs32_lr1e-4",
                 glue_record(task="mrpc", bs=32, lr=1e-4, score=0.8, metrics=mrpc_metrics))
    return root


def test_best_of_grid_skips_failed_and_diverged_points(grid_results):
    cells = zoo.glue_grid(zoo.find_records([str(grid_results)]))
    best = zoo.best_cells(cells)
    winner = best[("minilm", "rte")]
    assert (winner.batch_size, winner.learning_rate) == (32, 5e-5)
    assert cells[("minilm", "rte", 16, 3e-4, 3.0)].status == "failed"
    assert cells[("minilm", "rte", 32, 3e-4, 3.0)].status == "diverged"


def test_seeds_of_a_grid_point_are_averaged(tmp_path):
    write_record(tmp_path / "a", glue_record(bs=8, seed=1, score=0.70))
    write_record(tmp_path / "b", glue_record(bs=8, seed=2, score=0.50))
    write_record(tmp_path / "c", glue_record(bs=16, seed=1, score=0.65))
    best = zoo.best_cells(zoo.glue_grid(zoo.find_records([str(tmp_path)])))
    assert best[("minilm", "rte")].batch_size == 16  # 0.65 beats the mean 0.60, though one seed reached 0.70
    assert zoo.best_cells(zoo.glue_grid(zoo.find_records([str(tmp_path / "a"), str(tmp_path / "b")])))[
        ("minilm", "rte")].score == pytest.approx(0.60)


def test_only_failed_runs_leave_no_winner(tmp_path):
    write_record(tmp_path / "x", failed_record())
    assert zoo.best_cells(zoo.glue_grid(zoo.find_records([str(tmp_path)]))) == {}


def test_glue_table_follows_the_reference_format(grid_results):
    cells = zoo.glue_grid(zoo.find_records([str(grid_results)]))
    table = zoo.glue_score_table(["minilm"], zoo.best_cells(cells)).splitlines()
    assert table[0] == ("| Model | CoLA | SST-2 | MRPC F1/acc | QQP F1/acc | STS-B Pearson/Spearman | MNLI m/mm "
                        "| QNLI | WNLI | RTE | average |")
    assert table[2] == "| minilm | - | - | 87.92/83.09 | - | - | - | - | - | 62.00 | 71.00 (2 of 9) |"


def test_winner_table_names_each_cells_grid_point(grid_results):
    cells = zoo.glue_grid(zoo.find_records([str(grid_results)]))
    row = zoo.glue_winner_table(["minilm"], zoo.best_cells(cells)).splitlines()[2]
    assert "bs 32, lr 1e-4, 3 ep" in row and "bs 32, lr 5e-5, 3 ep" in row


def test_budget_row_and_the_command_that_reruns_it(tmp_path):
    request = {"name": "minilm", "model": "minilm", "max_train_samples": 2000,
               "extra_args": ["--per_device_eval_batch_size", "64"]}
    for task, count in (("rte", 2000), ("wnli", 635)):
        for lr in (5e-5, 1e-4):
            write_record(tmp_path / task / str(lr), glue_record(
                task=task, lr=lr, train_examples=count, sweep={"name": "minilm", "request": request, "seconds": 90}))
    cells = zoo.glue_grid(zoo.find_records([str(tmp_path)]))
    row = zoo_costs.glue_budget_table(["minilm"], cells).splitlines()[2]
    assert row == ("| minilm | wnli, rte | {32} x {5e-5, 1e-4} x {3} | {42} | first 2000 (wnli: all 635) | all | "
                   "4 completed, 0 failed or diverged | 6 min | CPU (2 cores) |")
    assert zoo_costs.sweep_commands(["minilm"], cells) == (
        "- minilm: `TASKS='wnli rte' BATCH_SIZES=32 LEARNING_RATES='5e-5 1e-4' EPOCHS=3 SEEDS=42 "
        "MAX_TRAIN_SAMPLES=2000 bash sweep_glue.sh minilm -- --per_device_eval_batch_size 64`")


def test_pretrain_table_row():
    table = zoo.pretrain_table([pretrain_record()]).splitlines()
    assert table[0] == ("| Model | Size | perplexity | eval_loss | test perplexity | evaluated over | corpus | "
                        "config |")
    # a version-1 record
    assert table[2] == "| bert-tiny | 4M | 26.206 | 3.266 | - | not recorded | wiki.train.raw | bert-tiny |"
    counted = pretrain_record(eval_tokens=226_560, eval_examples=2_266)
    assert zoo.pretrain_table([counted]).splitlines()[2] == (
        "| bert-tiny | 4M | 26.206 | 3.266 | - | 226,560 tokens of 2,266 blocks | wiki.train.raw | bert-tiny |")
    tested = pretrain_record(eval_tokens=226_560, eval_examples=2_266, test_loss=3.5, test_perplexity=math.exp(3.5),
                             test_tokens=100_000, test_examples=1_000, corpus="train-*.txt.xz (test: test.txt.xz)")
    assert zoo.pretrain_table([tested]).splitlines()[2] == (
        "| bert-tiny | 4M | 26.206 | 3.266 | 33.115 | validation 226,560 tokens of 2,266 blocks; test 100,000 tokens "
        "of 1,000 blocks | train-*.txt.xz (test: test.txt.xz) | bert-tiny |")


def test_an_evaluation_of_nothing_is_never_a_perplexity(tmp_path):
    """v1 wrote eval_loss 0 / perplexity 1.0 for --max_eval_samples 0, and the zoo ranked it best."""
    write_record(tmp_path / "empty-v1", pretrain_record(model="empty-v1", eval_loss=0.0, perplexity=1.0))
    write_record(tmp_path / "empty-v2", pretrain_record(model="empty-v2", eval_tokens=0, eval_examples=0,
                                                        schema_version=2, **records.batch_fields(32)))
    found = zoo.find_records([str(tmp_path)])
    rows = zoo.pretrain_table(zoo.pretrain_runs(found)).splitlines()[2:]
    assert all("| nothing evaluated | - |" in row for row in rows) and len(rows) == 2
    assert not any(zoo.is_usable(r) for r in found)


def test_an_undefined_correlation_is_shown_as_undefined_and_never_wins(tmp_path):
    undefined = {"eval_pearson": None, "eval_spearmanr": None, "eval_combined_score": None}
    reasons = {"eval_pearson": "undefined: every prediction (or every label) is the same value"}
    write_record(tmp_path / "a", glue_record(task="stsb", lr=3e-4, score=None, metrics=undefined, status="completed",
                                             undefined_metrics=reasons))
    cells = zoo.glue_grid(zoo.find_records([str(tmp_path)]))
    assert zoo.best_cells(cells) == {} and cells[("minilm", "stsb", 32, 3e-4, 3.0)].status == "undefined"
    assert "| minilm | - | - | - | - | undefined |" in zoo.glue_score_table(["minilm"], {}, cells)
    assert zoo_figures.heatmap_cell_text(cells[("minilm", "stsb", 32, 3e-4, 3.0)]) == "undefined"
    write_record(tmp_path / "b", glue_record(task="stsb", lr=5e-5, score=0.1, metrics={"eval_pearson": 0.1,
                                                                                     "eval_spearmanr": 0.1}))
    cells = zoo.glue_grid(zoo.find_records([str(tmp_path)]))
    assert zoo.best_cells(cells)[("minilm", "stsb")].learning_rate == 5e-5  # any score beats no score


def test_the_grid_is_keyed_by_the_examples_per_step(tmp_path):
    """16 per device x 2 accumulation steps is the point 32, not 16 (v1 records said either)."""
    accumulated = {**glue_record(bs=None, score=0.7), **records.batch_fields(16, 2), "schema_version": 2,
                   "status": "completed"}
    accumulated.pop("batch_size")
    write_record(tmp_path / "a", accumulated)
    cells = zoo.glue_grid(zoo.find_records([str(tmp_path)]))
    assert list(cells) == [("minilm", "rte", 32, 5e-5, 3.0)]
    assert zoo.run_rows(zoo.find_records([str(tmp_path)]), str(tmp_path))[0]["gradient_accumulation_steps"] == 2


def test_diverged_pretraining_shows_its_status_not_numbers():
    record = pretrain_record(status="diverged", diverged_at_step=120, eval_loss=None, perplexity=None)
    assert zoo.pretrain_table([record]).splitlines()[2] == (
        "| bert-tiny | 4M | diverged at step 120 | - | - | not recorded | wiki.train.raw | bert-tiny |")


def test_learning_rates_and_values_are_written_as_people_write_them():
    assert [zoo.format_lr(x) for x in (5e-5, 1e-4, 3e-4, 1.5e-4, 0.001)] == ["5e-5", "1e-4", "3e-4", "1.5e-4", "1e-3"]
    assert zoo_costs.describe_values({32, 8, None}) == "{8, 32}"


def test_build_writes_json_markdown_and_figures_atomically(grid_results, tmp_path):
    write_record(grid_results / "bert-tiny", pretrain_record())
    repo_file = tmp_path / "repo" / "MODEL_ZOO.md"
    summary = zoo.build_zoo([str(grid_results)], output=str(repo_file))
    out_dir = grid_results / "zoo"
    assert json.loads((out_dir / "best.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["glue"]["minilm"]["rte"]["grid_points"] == {"completed": 2, "failed": 1, "diverged": 1, "undefined": 0}
    assert summary["pretrain"]["bert-tiny"]["eval_loss"] == 3.266
    runs = json.loads((out_dir / "runs.json").read_text())
    assert sorted(r["status"] for r in runs) == ["completed", "completed", "completed", "diverged", "failed"]
    figures = sorted(os.listdir(out_dir / "figures"))
    assert figures == ["glue_minilm_mrpc.png", "glue_minilm_rte.png", "pretrain_bert-tiny_loss.png"]
    assert all((out_dir / "figures" / name).read_bytes().startswith(b"\x89PNG") for name in figures)
    text = repo_file.read_text()
    assert "## Pretraining" in text and "| bert-tiny | 4M |" in text and "| minilm |" in text
    assert "](../results/zoo/figures/glue_minilm_rte.png)" in text  # relative to MODEL_ZOO.md
    assert str(tmp_path) not in text  # no absolute path of this machine
    assert "](figures/glue_minilm_rte.png)" in (out_dir / "MODEL_ZOO.md").read_text()
    leftovers = [name for _, _, files in os.walk(tmp_path) for name in files if name.startswith(".tmp-")]
    assert leftovers == []


def test_cli_merges_results_folders(tmp_path, capsys):
    write_record(tmp_path / "pretraining" / "bert-tiny", pretrain_record())
    write_record(tmp_path / "sweeps" / "glue" / "bert-tiny" / "rte" / "p",
                 glue_record(model=str(tmp_path / "pretraining" / "bert-tiny"), score=0.58))
    output = tmp_path / "MODEL_ZOO.md"
    zoo.main(["--results", str(tmp_path / "pretraining"), "--results", str(tmp_path / "sweeps"),
              "--output", str(output)])
    text = output.read_text()
    assert "| bert-tiny | 4M | 26.206 | 3.266 | - | not recorded | wiki.train.raw | bert-tiny |" in text
    assert "| bert-tiny | - | - | - | - | - | - | - | - | 58.00 | 58.00 (1 of 9) |" in text
    assert (tmp_path / "pretraining" / "zoo" / "best.json").is_file()
    assert "1 pretrained models, 1 best GLUE cells" in capsys.readouterr().out


def test_cli_without_records_is_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        zoo.main(["--results", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no lmzoo_record.json" in err


def test_a_damaged_record_does_not_hide_the_others(grid_results, capsys):
    (grid_results / "glue" / "broken").mkdir()
    (grid_results / "glue" / "broken" / RECORD_NAME).write_text('{"kind": "gl')
    assert len(zoo.find_records([str(grid_results)])) == 5
    assert "not a readable results record" in capsys.readouterr().err


def test_each_glue_row_says_where_its_model_came_from():
    lines = zoo.model_origins(["bert-tiny", "minilm", "someone/else"], [pretrain_record()]).splitlines()
    assert lines[0] == "- bert-tiny: pretrained from scratch by this project (see Pretraining above)."
    assert "all-MiniLM-L6-v2" in lines[1] and "not pretrained here" in lines[1]
    assert lines[2] == "- someone/else: a checkpoint fine-tuned as given; not pretrained here."


def test_pretraining_rows_show_the_command_that_made_them():
    runs = [pretrain_record(command="python run_mlm.py --config_name bert-tiny --max_steps 1000"),
            pretrain_record(model="old-run")]
    assert zoo_costs.pretrain_commands(runs) == "- bert-tiny: `python run_mlm.py --config_name bert-tiny --max_steps 1000`"
    assert zoo_costs.pretrain_commands([pretrain_record()]) is None


def test_output_that_is_a_folder_is_one_line(grid_results, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        zoo.main(["--results", str(grid_results), "--output", str(tmp_path)])
    assert exit_info.value.code == 2
    assert f"--output {tmp_path} is a folder; give the markdown file to write" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- honest heatmaps


def seeded_cells(tmp_path, scores_by_point: dict) -> dict:
    """RTE cells from {(batch size, lr): [score per seed]}."""
    for (bs, lr), scores in scores_by_point.items():
        for seed, score in enumerate(scores):
            write_record(tmp_path / f"bs{bs}_lr{lr}_s{seed}", glue_record(bs=bs, lr=lr, seed=seed, score=score))
    return zoo.glue_grid(zoo.find_records([str(tmp_path)]))


def test_colour_scale_runs_from_a_constant_prediction_to_the_best(tmp_path):
    # Two cells 0.36 points apart used to sit at the two ends of the scale; anchored at RTE's majority class
    # (52.71), they are 3% of the scale apart.
    cells = seeded_cells(tmp_path, {(16, 5e-5): [0.6000], (32, 5e-5): [0.6036]})
    low, high = zoo_figures.colour_range("rte", list(cells.values()))
    assert (low, high) == (pytest.approx(0.5271), pytest.approx(0.6036))
    position = [(c.score - low) / (high - low) for c in cells.values()]
    assert max(position) - min(position) < 0.05
    # A grid at chance still gets a scale, one point wide, instead of a division by zero.
    assert zoo_figures.colour_range("cola", [zoo.GridCell("m", "cola", 8, 1e-4, 4.0)]) == (0.0, 0.01)


def test_cells_print_their_seed_spread_and_those_within_it_of_the_best_are_marked(tmp_path):
    cells = seeded_cells(tmp_path, {(16, 5e-5): [0.60, 0.62, 0.64], (32, 5e-5): [0.59, 0.61, 0.60],
                                    (64, 5e-5): [0.50, 0.51, 0.52]})
    best = zoo.best_cells(cells)[("minilm", "rte")]
    assert best.batch_size == 16 and best.spread == pytest.approx(0.02)
    assert zoo_figures.heatmap_cell_text(best) == "62.00\n\u00b12.00"
    near, far = cells[("minilm", "rte", 32, 5e-5, 3.0)], cells[("minilm", "rte", 64, 5e-5, 3.0)]
    assert zoo_grid.within_seed_spread(near, best)  # 2.00 points behind, sd 2.00: not told apart
    assert not zoo_grid.within_seed_spread(far, best)  # 11 points behind
    assert not zoo_grid.within_seed_spread(best, best)
    assert "3 seeds, sd 2.00" in zoo.grid_point_text(best)


def test_one_seed_per_point_claims_no_spread(tmp_path):
    cells = seeded_cells(tmp_path, {(16, 5e-5): [0.62], (32, 5e-5): [0.6199]})
    best = zoo.best_cells(cells)[("minilm", "rte")]
    assert not zoo_grid.within_seed_spread(cells[("minilm", "rte", 32, 5e-5, 3.0)], best)
    assert zoo_figures.heatmap_cell_text(best) == "62.00"
    caption = zoo_figures.heatmap_caption(0.5271, 0.62, list(cells.values()), best)
    assert "1 seed per point, so the seed spread is unknown" in caption


@pytest.mark.parametrize("task", ["cola", "sst2", "mrpc", "stsb", "qnli", "rte", "wnli"])
def test_constant_prediction_scores_match_the_dev_files(task, data_dir):
    """The colour scales' floors: the best constant prediction's score on each local dev set."""
    import numpy as np

    from lmzoo.glue_data import load_glue_data
    from lmzoo.glue_tasks import TASKS, glue_metrics

    spec = TASKS[task]
    glue = data_dir / "glue"
    labels = np.asarray(next(iter(load_glue_data(spec, glue_dir=str(glue), train=False, dev=True,
                                                 test=False).dev.values()))["label"])
    constants = [0.0] if spec.is_regression else range(spec.num_labels)
    scores = [glue_metrics(spec, np.full(len(labels), c), labels)["combined_score"] for c in constants]
    best = max(0.0 if math.isnan(s) else s for s in scores)  # a correlation with a constant is undefined: 0
    assert spec.constant_score == pytest.approx(best, abs=5e-5)


def test_each_pretrained_row_is_set_beside_the_reference_with_its_token_ratio():
    from lmzoo import zoo_reference

    row = pretrain_record(model="bert-tiny-books", config_name="bert-tiny", perplexity=150.0, tokens_seen=49_152_000,
                          corpus="train-*.txt.xz (validation: validation.txt.xz)")
    line = zoo_reference.reference_line(row)
    assert line.startswith("- bert-tiny-books: perplexity 150.00 on its validation text (train-*.txt.xz "
                           "(validation: validation.txt.xz)) after 49.2M tokens; the reference's bert-tiny: 26.21 "
                           "after 40 epochs of English Wikipedia (final figure; no curve published), about 190B")
    assert "this row saw 1/3,866 of them" in line and "not a ranking" in line
    assert zoo_reference.reference_line(pretrain_record(config_name="bert-tiny", config_overrides="n_layer=1")) is None
    assert zoo_reference.reference_line(pretrain_record(config_name="my-own")) is None
    gpt2 = zoo_reference.reference_line(pretrain_record(config_name="gpt2", perplexity=300.0, tokens_seen=1e6))
    assert "127.97 after 40 epochs of OpenAI's GPT-2 output dataset" in gpt2 and "tokens seen not published" in gpt2


def test_a_published_curve_is_compared_at_equal_tokens(monkeypatch):
    from lmzoo import zoo_reference

    curved = zoo_reference.ReferencePretraining(26.0, "Wikipedia", "40 epochs", 190e9, "estimated",
                                                curve=((1e6, 1000.0), (1e8, 100.0), (1e10, 30.0)))  # log-log: 1e7 is halfway
    monkeypatch.setitem(zoo_reference.REFERENCE_PRETRAINING, "bert-tiny", curved)
    assert zoo_reference.perplexity_at(curved.curve, 1e7) == pytest.approx(316.23, abs=0.01)
    assert zoo_reference.perplexity_at(curved.curve, 1e11) is None
    line = zoo_reference.reference_line(pretrain_record(perplexity=150.0, tokens_seen=10**8))
    assert "the reference's bert-tiny at the same tokens seen: 100.00 (Wikipedia, from its published curve)" in line


def test_published_records_hold_no_absolute_path_and_rebuild_the_same_tables(grid_results, tmp_path):
    project = grid_results.parent
    write_record(grid_results / "bert-tiny", pretrain_record(output_dir=str(project / "outputs" / "bert-tiny"),
                                                             tokenizer=str(tmp_path.parent / "elsewhere" / "tok"),
                                                             data=f"glue_dir:{tmp_path.parent / 'glue'}"))
    published = tmp_path / "published"
    first = zoo.build_zoo([str(grid_results)], out_dir=str(tmp_path / "a"), publish=str(published))
    texts = [p.read_text() for p in published.rglob(RECORD_NAME)]
    assert len(texts) == 6 and not any(str(tmp_path.parent) in text for text in texts)
    record = json.loads((published / "bert-tiny" / RECORD_NAME).read_text())
    assert record["output_dir"] == os.path.join("outputs", "bert-tiny") and record["tokenizer"] == "tok"
    assert record["data"] == "glue_dir:glue" and record["learning_rate"] == 1e-3
    again = zoo.build_zoo([str(published)], out_dir=str(tmp_path / "b"))
    assert again["glue"] == first["glue"] or all(
        again["glue"][m][t]["combined_score"] == first["glue"][m][t]["combined_score"]
        for m in first["glue"] for t in first["glue"][m])
    assert (tmp_path / "a" / "MODEL_ZOO.md").read_text().split("## Methods")[0] == \
        (tmp_path / "b" / "MODEL_ZOO.md").read_text().split("## Methods")[0]


def reference_grid_records(tmp_path, model: str, **extra) -> dict:
    """SST-2 and MRPC over the reference's whole grid (20 points, 4 epochs, no cap), best at batch 32, lr 1e-4."""
    for task in ("sst2", "mrpc"):
        for bs in (8, 16, 32, 64, 128):
            for lr in (3e-5, 5e-5, 1e-4, 3e-4):
                score = 0.82 if (bs, lr) == (32, 1e-4) else 0.70
                metrics = {"eval_f1": score + 0.01, "eval_accuracy": score - 0.01} if task == "mrpc" else None
                write_record(tmp_path / model / task / f"bs{bs}_lr{lr}",
                             glue_record(task=task, model=model, bs=bs, lr=lr, epochs=4.0, score=score,
                                         metrics=metrics, **{"max_train_samples": None, **extra}))
    return zoo.glue_grid(zoo.find_records([str(tmp_path / model)]))


def test_a_row_tuned_over_the_reference_grid_is_set_beside_its_glue_table(tmp_path):
    from lmzoo import zoo_reference

    cells = reference_grid_records(tmp_path, "bert-tiny-books")
    best = zoo.best_cells(cells)
    pretrained = [pretrain_record(model="bert-tiny-books", config_name="bert-tiny", tokens_seen=49_152_000,
                                  corpus="train-*.txt.xz (validation: validation.txt.xz)")]
    text = zoo_reference.glue_reference_lines(["bert-tiny-books", "minilm"], pretrained, cells, best, zoo.score_cell)
    assert text == ("- bert-tiny-books beside the reference's bert-tiny, the best of the same grid, one seed per "
                    "point here: SST-2 82.00 vs 83.03, MRPC 83.00/81.00 vs 82.83/73.77. This row was pretrained on 49.2M "
                    "tokens of train-*.txt.xz, 1/3,866 of the reference's ~190B tokens of English Wikipedia: "
                    "different corpora and pretraining budgets, so this says how far the row is from the reference, "
                    "not which recipe is better.")
    # An overridden preset is not the reference's model; a checkpoint not pretrained here has no line either.
    overridden = [dict(pretrained[0], config_overrides="num_hidden_layers=1")]
    assert zoo_reference.glue_reference_lines(["bert-tiny-books"], overridden, cells, best, zoo.score_cell) is None


def test_a_row_tuned_over_a_smaller_grid_says_why_it_is_not_compared(tmp_path):
    from lmzoo import zoo_reference

    cells = reference_grid_records(tmp_path, "bert-tiny", max_train_samples=2000)
    cells = {key: cell for key, cell in cells.items() if cell.batch_size == 32 and cell.learning_rate != 3e-5}
    line = zoo_reference.glue_reference_lines(["bert-tiny"], [pretrain_record()], cells, zoo.best_cells(cells),
                                              zoo.score_cell)
    assert line == ("- bert-tiny: tuned over a different grid from the reference's ({8, 16, 32, 64, 128} x {3e-5, "
                    "5e-5, 1e-4, 3e-4} x {4}, every point on each task, whole training and dev sets): here batch "
                    "sizes {32}; learning rates {5e-5, 1e-4, 3e-4}; the first 2000 training examples. Its GLUE "
                    "scores are therefore not set beside the reference's bert-tiny.")


def test_a_task_short_of_the_reference_grid_or_a_capped_dev_set_is_not_compared(tmp_path):
    from lmzoo import zoo_reference

    cells = reference_grid_records(tmp_path, "bert-tiny-books")
    pretrained = [pretrain_record(model="bert-tiny-books", config_name="bert-tiny")]
    # MRPC at one point while SST-2 covers the grid: each axis still shows every value, but MRPC was not tuned.
    partial = {key: cell for key, cell in cells.items()
               if cell.task == "sst2" or (cell.batch_size, cell.learning_rate) == (32, 1e-4)}
    line = zoo_reference.glue_reference_lines(["bert-tiny-books"], pretrained, partial, zoo.best_cells(partial),
                                              zoo.score_cell)
    assert "here MRPC: fewer than its 20 points." in line and "vs 83.03" not in line
    capped = reference_grid_records(tmp_path / "capped", "bert-tiny-books", max_eval_samples=500)
    line = zoo_reference.glue_reference_lines(["bert-tiny-books"], pretrained, capped, zoo.best_cells(capped),
                                              zoo.score_cell)
    assert "here the first 500 dev examples." in line


def test_the_comparison_says_how_many_seeds_each_point_averages(tmp_path):
    from lmzoo import zoo_reference

    cells = reference_grid_records(tmp_path, "bert-tiny-books")
    for seed in (43, 44):  # MRPC over three seeds, SST-2 over one
        for key, cell in list(cells.items()):
            if cell.task == "mrpc":
                cell.runs.append(dict(cell.runs[0], seed=seed))
    line = zoo_reference.glue_reference_lines(["bert-tiny-books"], [pretrain_record(
        model="bert-tiny-books", config_name="bert-tiny")], cells, zoo.best_cells(cells), zoo.score_cell)
    assert "the best of the same grid, each point here the mean of 3 seeds (SST-2: 1):" in line


def test_rows_tuned_over_different_grids_are_said_to_be_so_under_the_table(tmp_path):
    full = reference_grid_records(tmp_path, "bert-tiny-books")
    reduced = reference_grid_records(tmp_path, "minilm", max_train_samples=2000)
    reduced = {key: cell for key, cell in reduced.items() if cell.batch_size == 32}
    note = zoo_costs.different_grids_note(["bert-tiny-books", "minilm"], {**full, **reduced})
    assert note == ("The rows were tuned over different grids (batch size x learning rate x epochs; "
                    "bert-tiny-books: {8, 16, 32, 64, 128} x {3e-5, 5e-5, 1e-4, 3e-4} x {4}, training examples: "
                    "all; minilm: {32} x {3e-5, 5e-5, 1e-4, 3e-4} x {4}, training examples: first 2000), so a gap "
                    "between them may come from the grid rather than the model.")
    assert zoo_costs.different_grids_note(["bert-tiny-books"], full) is None


def test_tasks_run_over_more_seeds_are_named_in_the_budget_and_get_their_own_sweep(tmp_path):
    request = {"name": "minilm", "model": "minilm", "max_train_samples": 2000, "extra_args": []}
    for task, seeds in (("cola", (42, 43, 44)), ("rte", (42, 43, 44)), ("sst2", (42,))):
        for seed in seeds:
            write_record(tmp_path / task / str(seed), glue_record(
                task=task, seed=seed, sweep={"name": "minilm", "request": request, "seconds": 60}))
    cells = zoo.glue_grid(zoo.find_records([str(tmp_path)]))
    assert zoo_costs.glue_budget_table(["minilm"], cells).splitlines()[2].split(" | ")[3] == \
        "{42, 43, 44} (sst2: {42})"
    assert zoo_costs.sweep_commands(["minilm"], cells) == (
        "- minilm: `TASKS='cola rte' BATCH_SIZES=32 LEARNING_RATES=5e-5 EPOCHS=3 SEEDS='42 43 44' "
        "MAX_TRAIN_SAMPLES=2000 bash sweep_glue.sh minilm` and `TASKS=sst2 BATCH_SIZES=32 LEARNING_RATES=5e-5 "
        "EPOCHS=3 SEEDS=42 MAX_TRAIN_SAMPLES=2000 bash sweep_glue.sh minilm`")
