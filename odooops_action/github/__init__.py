"""The GitHub-facing layer: job log commands, file commands, the job summary and check runs.

Mode functions report to these modules; none of them talks to the run queue. Submodules are not
imported here so that the log/summary path never pays for PyGithub.
"""
