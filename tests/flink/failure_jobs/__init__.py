"""Job modules and servers of the failure tests (tests/flink/test_failures.py)."""
