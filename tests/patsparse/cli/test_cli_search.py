"""``patsparse search``: its options build the job the search's configs describe."""

from __future__ import annotations

from patsparse.cli import build_parser
from patsparse.cli.search import job_from_args


def test_search_options_left_out_take_the_configs_defaults():
    from patsparse.search.config import SearchConfig
    from patsparse.search.workflow import NPSJob

    argv = ["search", "digits-cnn", "--latency-ms", "1", "--storage", "memory"]
    job = job_from_args(build_parser().parse_args(argv))
    assert job == NPSJob(search=SearchConfig(latency_ms=1.0), model="digits-cnn")


def test_search_options_given_reach_the_job():
    argv = ["search", "sr-net", "--latency-fraction", "0.5", "--data", "sr", "--budget", "3"]
    argv += ["--final-epochs", "2", "--methods", "admm", "--repeat", "5", "--seed", "4"]
    job = job_from_args(build_parser().parse_args(argv))
    assert job.search.budget == 3 and job.search.seed == 4 and job.seed == 4
    assert job.search.storage == "sqlite:///nps.db" and job.data.name == "sr"
    assert job.phase3.methods == ("admm",) and job.phase3.admm_epochs == 2
    assert job.phase3.retrain_epochs == 2 and job.timing.repeat == 5
