"""``dagbox bench``: many runs of one DAG over a matrix of params, resumable, summarised."""
