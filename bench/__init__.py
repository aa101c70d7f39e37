"""peft-ir-bench: a benchmark harness for parameter-efficient tuning in information retrieval."""

__version__ = "0.1.0"
