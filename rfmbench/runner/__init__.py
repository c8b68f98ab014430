"""The runner: the grid of jobs (task x outer fold x model) and how they are executed."""
