"""The card's training history: a chain of runs read back oldest first, and its Markdown."""

from __future__ import annotations

from typing import Any

from viewer.model.training_history import FURTHER_TRAINING, history_markdown_lines, training_runs


def _run(recipe: str, **more: Any) -> dict[str, Any]:
    return {"recipe": recipe, "epochs": {"encoder": 1}, **more}


def _child(
    record: dict[str, Any], parent: dict[str, Any], version: str, sha: str, size: int
) -> dict[str, Any]:
    return {
        **record,
        "initialised_from": {
            "name": "m",
            "version": version,
            "sha256": sha,
            "input_size": size,
            "training": parent,
        },
    }


FIRST = _run("recipe A")
SECOND = _child(_run("recipe A"), FIRST, "1", "a" * 64, 192)
THIRD = _child(
    _run("recipe B", command="gru-viewer train --data DIR --data DIR --val DIR"), SECOND, "2", "b" * 64, 256
)
DATA = FURTHER_TRAINING.join(["set 1; set 2", "set 3", "set 4; set 5"])


def test_a_chain_reads_back_oldest_first_with_each_runs_data_and_size():
    runs = training_runs("m", "3", "c" * 64, 256, THIRD, DATA)
    assert [r.version for r in runs] == ["1", "2", "3"]
    assert [r.input_size for r in runs] == [192, 256, 256]
    assert [r.data for r in runs] == [["set 1", "set 2"], ["set 3"], ["set 4", "set 5"]]
    assert [r.record["recipe"] for r in runs] == ["recipe A", "recipe A", "recipe B"]
    assert all("initialised_from" not in r.record for r in runs)


def test_the_markdown_lists_each_run_once_and_names_repeated_recipes():
    text = "\n".join(history_markdown_lines(training_runs("m", "3", "c" * 64, 256, THIRD, DATA), DATA))
    assert text.startswith("In 3 runs, each continuing from the weights of the run before")
    assert (
        text.index("### Run 1: m 1")
        < text.index("- set 1")
        < text.index("### Run 2: m 2")
        < text.index("- set 3")
    )
    assert "Slices read at 192 px." in text
    assert f"Started from run 1's weights (1, sha256 {'a' * 12}…); slices read at 256 px." in text
    assert text.count("recipe A") == 1 and "Recipe as in run 1." in text and "recipe B" in text
    assert (
        "Command (its --data folders are the data sets above, in order; --val is the validation set):" in text
    )
    assert FURTHER_TRAINING not in text  # the joined text is not repeated when each run has its data


def test_records_that_list_their_data_win_over_the_joined_text():
    first = _run("r", data=["x; with a semicolon"])
    second = _child(_run("r", data=["y"]), first, "1", "a" * 64, 64)
    runs = training_runs("m", "2", "", 64, second, "does not split into two runs")
    assert [r.data for r in runs] == [["x; with a semicolon"], ["y"]]


def test_text_that_does_not_match_the_runs_is_kept_whole():
    runs = training_runs("m", "3", "", 256, THIRD, "a hand-written description")
    assert all(r.data == [] for r in runs)
    text = "\n".join(history_markdown_lines(runs, "a hand-written description"))
    assert "a hand-written description" in text and "### Run 3: m 3" in text
    assert "Command:" in text  # no data listed, so the command's folders are not said to follow them


def test_weights_trained_in_one_run_keep_the_plain_layout():
    runs = training_runs("m", "1", "", 128, FIRST, "set 1; set 2")
    lines = history_markdown_lines(runs, "set 1; set 2")
    assert lines[0] == "set 1; set 2" and "### Run" not in "\n".join(lines) and "recipe A" in lines
