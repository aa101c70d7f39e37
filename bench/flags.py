"""The flags that define a grid (run, status, report): set, they override the suite; unset, the suite's
value holds. The runner restricts a report to the grid when one is given; the help says where a value
comes from."""

GRID_FLAGS = (
    "methods",
    "budgets",
    "seeds",
    "datasets",
    "stage",
    "model",
    "first_stage",
    "precision",
    "epochs",
    "max_steps",
    "max_queries",
    "batch_size",
    "depth",
    "metrics",
    "search",
)
