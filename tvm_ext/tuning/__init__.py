"""MetaSchedule tuning of pattern-sparse models: rules, builder/runner, databases, pipelines."""
