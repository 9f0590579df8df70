"""What the patterns hold open: engines, clients, the process pool and the job queue, one module each."""
