"""The experiment graph: the grid of jobs `full_repro` runs on Ray (DESIGN.md, turn 2).

- `layout`: every path a reproduction writes (one owner of the run-folder layout);
- `jobs`: a job (name, kind, dependencies, resources, content-hash key) and its record;
- `grid`: the config's suites x methods x views x seeds (+ offline cells) as jobs;
- `runner`: Ray tasks with ObjectRef dependencies, retries, skips, logs, records;
- `execute`: one job in its Ray task: its kind's stage (``run(cfg, inputs, out)``, the
  same function the commands call), its MLflow run, its record;
- `driver`: `run(cfg, out=...)`: plan, checks (resources per node, shared output
  folder), MLflow parent run, the outcome table.
"""
