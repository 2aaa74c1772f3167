"""The resume command printed by an interrupted run."""

from __future__ import annotations

from pathlib import Path

from braintumor.training.interrupt import TrainingInterrupted, resume_command


def test_resume_command_replaces_run_dir_and_resume_flags() -> None:
    argv = ["train", "r", "--data", "my data", "--run-dir=old", "--no-resume", "--set", "lr=1"]
    command = resume_command(argv, Path("runs/new one"))
    assert command == (
        "braintumor train r --data 'my data' --set lr=1 --resume --run-dir 'runs/new one'"
    )
    again = resume_command(["train", "--run-dir", "runs/a", "--resume"], Path("runs/a"))
    assert again == "braintumor train --resume --run-dir runs/a"


def test_exit_codes_follow_the_shell_convention() -> None:
    assert TrainingInterrupted(15, Path("r"), 2).exit_code == 143
    assert TrainingInterrupted(2, Path("r"), 0).exit_code == 130
    assert (
        str(TrainingInterrupted(15, Path("r"), 2))
        == "SIGTERM: training stopped, saved after epoch 2"
    )
    assert "no checkpoint yet" in str(TrainingInterrupted(2, Path("r"), None))
