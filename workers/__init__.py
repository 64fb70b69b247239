"""Where pantailor runs: Dask cluster construction, the worker plugin and the tile kernel."""
