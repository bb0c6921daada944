"""The study's execution wing: planning trials into tasks (runner), training them in worker
processes (worker) through an executor (local pool, SLURM, Ray), with progress and HParams."""
