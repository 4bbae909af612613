"""GLUE readers on the real files (row counts from the data README) and their one-line errors on bad input."""

import json

import pytest

from lmzoo import glue_data, glue_tasks
from lmzoo.errors import UsageError

TASKS = glue_tasks.TASKS

# (task, train rows, dev rows, test rows) as listed in the shared data README.
ROW_COUNTS = [
    ("cola", 8551, 1043, 1063),
    ("sst2", 67349, 872, 1821),
    ("mrpc", 3668, 408, 1725),
    ("stsb", 5749, 1500, 1379),
    ("rte", 2490, 277, 3000),
    ("wnli", 635, 71, 146),
]


@pytest.fixture(scope="module")
def glue_dir(data_dir):
    return str(data_dir / "glue")


@pytest.mark.parametrize("task, n_train, n_dev, n_test", ROW_COUNTS)
def test_real_glue_files_read_completely(glue_dir, task, n_train, n_dev, n_test):
    data = glue_data.load_glue_data(TASKS[task], glue_dir=glue_dir, train=True, dev=True, test=True)
    assert len(data.train) == n_train
    assert len(data.dev["eval"]) == n_dev
    assert [(name, len(split)) for name, split in data.test.items()] == [(TASKS[task].test_splits[0].key, n_test)]
    assert "label" not in data.test[TASKS[task].test_splits[0].key].column_names
    assert ("text_pair" in data.train.column_names) == TASKS[task].is_pair


def test_qnli_dev_only(glue_dir):
    data = glue_data.load_glue_data(TASKS["qnli"], glue_dir=glue_dir, train=False, dev=True, test=True)
    assert len(data.dev["eval"]) == 5463
    assert len(data.test["QNLI"]) == 5463
    first = data.dev["eval"][0]
    assert first["text"] == "What came into force after the new constitution was herald?"
    assert first["label"] == TASKS["qnli"].labels.index("entailment")
    with pytest.raises(UsageError, match=r"QNLI/train.tsv does not exist"):
        glue_data.load_glue_data(TASKS["qnli"], glue_dir=glue_dir, train=True, dev=False)


def test_cola_headerless_files_read_by_position(glue_dir):
    data = glue_data.load_glue_data(TASKS["cola"], glue_dir=glue_dir, train=True, dev=True, test=True)
    first = data.train[0]
    assert first == {"index": "0", "text": "Our friends won't buy this analysis, let alone the next one we propose.",
                     "label": 1}
    assert sum(data.train["label"]) == 6023  # README: 0:2528 1:6023
    assert sum(data.dev["eval"]["label"]) == 721
    assert data.test["CoLA"][0] == {"index": "0", "text": "Bill whistled past the house."}


def test_mrpc_header_with_byte_order_mark_and_quotes_kept_as_text(glue_dir):
    data = glue_data.load_glue_data(TASKS["mrpc"], glue_dir=glue_dir, train=False, dev=True)
    dev = data.dev["eval"]
    assert sum(dev["label"]) == 279  # README: 0:129 1:279
    # The GLUE files are not quoted: a leading quote is part of the sentence.
    assert dev[0]["text_pair"].startswith('" The foodservice pie business')


def test_stsb_scores_and_indices(glue_dir):
    data = glue_data.load_glue_data(TASKS["stsb"], glue_dir=glue_dir, train=False, dev=True, test=True)
    dev = data.dev["eval"]
    assert dev[0]["label"] == 5.0 and dev[0]["index"] == "0"
    assert min(dev["label"]) >= 0.0 and max(dev["label"]) <= 5.0
    assert data.test["STS-B"]["index"] == [str(i) for i in range(1379)]


def test_sst2_dev_without_index_column_is_numbered(glue_dir):
    dev = glue_data.load_glue_data(TASKS["sst2"], glue_dir=glue_dir, train=False, dev=True).dev["eval"]
    assert dev["index"][:3] == ["0", "1", "2"]


def test_glue_dir_from_the_environment(glue_dir, monkeypatch):
    monkeypatch.setenv(glue_tasks.GLUE_DIR_ENV, glue_dir)
    data = glue_data.load_glue_data(TASKS["wnli"], train=False, dev=True)
    assert len(data.dev["eval"]) == 71


def test_limit_keeps_the_first_examples(glue_dir):
    data = glue_data.load_glue_data(TASKS["rte"], glue_dir=glue_dir, train=True, dev=True, test=True)
    data.limit(10, 5, None)
    assert (len(data.train), len(data.dev["eval"]), len(data.test["RTE"])) == (10, 5, 3000)
    assert data.train["index"] == [str(i) for i in range(10)]


# ----------------------------------------------------------------------------------------------------------------
# Small synthetic folders in the GLUE layout, and user files


def make_task_folder(root, folder, files: dict[str, str]):
    task_dir = root / folder
    task_dir.mkdir(parents=True)
    for name, text in files.items():
        (task_dir / name).write_text(text, encoding="utf-8")
    return str(root)


RTE_OK = "index\tsentence1\tsentence2\tlabel\n0\tA man sleeps.\tA person rests.\tentailment\n"


def test_task_folder_found_case_insensitively(tmp_path):
    root = make_task_folder(tmp_path, "rte", {"dev.tsv": RTE_OK})
    data = glue_data.load_glue_data(TASKS["rte"], glue_dir=root, train=False, dev=True)
    assert data.dev["eval"][0] == {"index": "0", "text": "A man sleeps.", "text_pair": "A person rests.", "label": 0}


def test_mnli_reads_matched_mismatched_and_the_diagnostic_set(tmp_path):
    header = "index\tpromptID\tsentence1\tsentence2\tlabel1\tgold_label\n"
    dev = header + "0\t1\tP.\tH.\tneutral\tneutral\n"
    test = "index\tpromptID\tsentence1\tsentence2\n0\t1\tP.\tH.\n1\t2\tQ.\tI.\n"
    root = make_task_folder(tmp_path, "MNLI", {"dev_matched.tsv": dev, "dev_mismatched.tsv": dev,
                                               "test_matched.tsv": test, "test_mismatched.tsv": test})
    make_task_folder(tmp_path, "diagnostic", {"diagnostic.tsv": "index\tsentence1\tsentence2\n0\tA.\tB.\n"})
    data = glue_data.load_glue_data(TASKS["mnli"], glue_dir=root, train=False, dev=True, test=True)
    assert list(data.dev) == ["eval", "eval_mm"]
    assert data.dev["eval_mm"][0]["label"] == TASKS["mnli"].labels.index("neutral")
    assert {name: len(split) for name, split in data.test.items()} == {"MNLI-m": 2, "MNLI-mm": 2, "AX": 1}


@pytest.mark.parametrize("suffix", ["csv", "json", "jsonl", "tsv"])
def test_user_files_with_glue_or_hub_column_names(tmp_path, suffix):
    rows = [{"sentence1": "A b.", "sentence2": 'He said "hi", twice.', "label": "not_entailment"},
            {"sentence1": "C d.", "sentence2": "E f.", "label": "entailment"}]
    path = tmp_path / f"train.{suffix}"
    if suffix == "csv":
        path.write_text('sentence1,sentence2,label\n'
                        'A b.,"He said ""hi"", twice.",not_entailment\nC d.,E f.,entailment\n')
    elif suffix == "json":
        path.write_text(json.dumps(rows))
    elif suffix == "jsonl":
        path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    else:
        path.write_text("sentence1\tsentence2\tlabel\n" + "".join(
            f"{r['sentence1']}\t{r['sentence2']}\t{r['label']}\n" for r in rows))
    data = glue_data.load_glue_data(TASKS["rte"], train_file=str(path), train=True, dev=False)
    assert data.train["text_pair"] == ['He said "hi", twice.', "E f."]
    assert data.train["label"] == [1, 0]
    assert data.train["index"] == ["0", "1"]


def test_hub_column_names_accepted_for_mnli(tmp_path):
    path = tmp_path / "dev.jsonl"
    path.write_text(json.dumps({"premise": "P.", "hypothesis": "H.", "label": "contradiction", "idx": 7}) + "\n")
    data = glue_data.load_glue_data(TASKS["mnli"], validation_file=str(path), train=False, dev=True)
    assert data.dev["eval"][0] == {"index": "7", "text": "P.", "text_pair": "H.", "label": 2}


# ----------------------------------------------------------------------------------------------------------------
# Bad input: one UsageError naming the file, the line and the culprit


def load_rte_dev(tmp_path, text):
    root = make_task_folder(tmp_path, "RTE", {"dev.tsv": text})
    return glue_data.load_glue_data(TASKS["rte"], glue_dir=root, train=False, dev=True)


def test_missing_column_names_file_and_column(tmp_path):
    message = r"RTE/dev.tsv has no column 'sentence2' \(its columns: index, sentence1, label\)"
    with pytest.raises(UsageError, match=message):
        load_rte_dev(tmp_path, "index\tsentence1\tlabel\n0\tA.\tentailment\n")


def test_label_outside_the_label_set_names_file_line_value_and_set(tmp_path):
    text = RTE_OK + "1\tA.\tB.\tmaybe\n"
    with pytest.raises(UsageError, match=r"RTE/dev.tsv line 3: label 'maybe' is not one of the task's labels: "
                                         r"entailment, not_entailment"):
        load_rte_dev(tmp_path, text)


def load_train_file(tmp_path, name, text, task):
    path = tmp_path / name
    path.write_text(text)
    return glue_data.load_glue_data(TASKS[task], train_file=str(path), train=True, dev=False)


def test_stsb_score_outside_zero_to_five(tmp_path):
    with pytest.raises(UsageError, match=r"train.csv line 3: label '6' is not a similarity score from 0 to 5"):
        load_train_file(tmp_path, "train.csv", "sentence1,sentence2,score\nA.,B.,3.5\nC.,D.,6\n", "stsb")


def test_wrong_number_of_fields_names_file_and_line(tmp_path):
    text = RTE_OK + "1\tA.\tB\tentailment\textra\n"
    message = r"RTE/dev.tsv line 3: expected 4 tab-separated fields \(as the header\), found 5"
    with pytest.raises(UsageError, match=message):
        load_rte_dev(tmp_path, text)


def test_empty_split(tmp_path):
    with pytest.raises(UsageError, match=r"RTE/dev.tsv has no rows"):
        load_rte_dev(tmp_path, "index\tsentence1\tsentence2\tlabel\n")
    with pytest.raises(UsageError, match=r"RTE/dev.tsv is empty"):
        load_rte_dev(tmp_path / "again", "")


def test_missing_file_and_missing_task_folder(tmp_path):
    root = make_task_folder(tmp_path, "RTE", {"dev.tsv": RTE_OK})
    with pytest.raises(UsageError, match=r"RTE/train.tsv does not exist"):
        glue_data.load_glue_data(TASKS["rte"], glue_dir=root, train=True, dev=True)
    with pytest.raises(UsageError, match=r"has no folder for task cola \(expected CoLA/\)"):
        glue_data.load_glue_data(TASKS["cola"], glue_dir=root, train=True, dev=False)
    with pytest.raises(UsageError, match=r"nowhere.csv does not exist"):
        glue_data.load_glue_data(TASKS["rte"], train_file=str(tmp_path / "nowhere.csv"), train=True, dev=False)


def test_jsonl_record_without_a_text_names_the_line(tmp_path):
    with pytest.raises(UsageError, match=r"train.jsonl line 2: no value for column 'sentence'"):
        load_train_file(tmp_path, "train.jsonl", '{"sentence": "ok", "label": 1}\n{"label": 0}\n', "sst2")


def test_headerless_file_too_narrow_for_cola(tmp_path):
    root = make_task_folder(tmp_path, "CoLA", {"train.tsv": "gj04\t1\n"})
    with pytest.raises(UsageError, match=r"no header naming 'sentence'.*headerless CoLA layout"):
        glue_data.load_glue_data(TASKS["cola"], glue_dir=root, train=True, dev=False)


def test_the_hub_offline_points_to_glue_dir(monkeypatch):
    monkeypatch.delenv(glue_tasks.GLUE_DIR_ENV, raising=False)
    with pytest.raises(UsageError, match=r"offline.*--glue_dir DIR"):
        glue_data.load_glue_data(TASKS["rte"], train=True, dev=True)


def test_glue_dir_and_files_together_are_refused(tmp_path):
    with pytest.raises(UsageError, match="either --glue_dir or --train_file"):
        glue_data.load_glue_data(TASKS["rte"], glue_dir=str(tmp_path), train_file="x.csv")
