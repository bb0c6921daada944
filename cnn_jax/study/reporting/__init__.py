"""The study's reporting wing: rows of the store's finished trials, statistics, tables,
figures and the markdown report. It reads the trial store and never trains."""
