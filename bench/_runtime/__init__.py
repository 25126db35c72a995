"""Job modules of `bench/bench_runtime.py`: our agent job and the flink-agents baseline's.

Each side runs as its own subprocess in its own venv: `ours_job` in the project's venv,
`baseline_job` in a venv with ``flink-agents==0.2.0`` (apache-flink 2.2.x). `workload` is the
stdlib-only contract both share: the input record, the scripted model's answer, the tool, and the
output record the bench measures.
"""
