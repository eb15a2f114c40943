"""The OdooOps worker (``odooops worker`` / ``python -m odooops_action.worker``).

A worker claims queued runs, executes a command for each, and records everything in the ``ops``
schema through the same SQL functions every client uses (the database owns the rules).

Connection
    ``DATABASE_URL`` set: a direct PostgreSQL connection (psycopg 3) per slot, plus one dedicated
    connection that ``LISTEN``s on ``ops_run_queued`` and ``ops_run_cancelled``, so a queued run is
    claimed and a cancellation noticed at once. Otherwise ``SUPABASE_URL`` and a service key: the
    REST API, with polling (``--poll-interval``, default 5 s, while idle). ``--store`` forces one.

Worker ids
    ``worker-<host>-<pid>``, or ``worker-<host>-<pid>-<slot>`` with ``--concurrency N`` (N slots in
    one process, each with its own store and connection); ``--worker-name`` replaces the
    ``worker-<host>-<pid>`` part. Filters ``--project``, ``--env``, ``--workflow-type`` restrict
    what ``claim_next_run`` may pick.

Executing a run
    ``start_run`` moves the run to ``running``; then ``<--command> <run_id>`` (default
    ``./scripts/odooops/execute_run.sh <run_id>``; ``--command`` is split like a shell would) runs in
    its own session and process group, led by a guard process (``guard.py``) that stops the whole
    group (SIGTERM, then SIGKILL after ``--kill-grace``, at most 5 s) when the worker process dies,
    even by SIGKILL; it runs with stdin from /dev/null and these variables added to the
    worker's environment: ``ODOOOPS_RUN_ID``, ``ODOOOPS_PROJECT_ID``, ``ODOOOPS_ENV_ID``,
    ``ODOOOPS_WORKFLOW_TYPE``, ``ODOOOPS_GIT_REF``, ``ODOOOPS_GIT_SHA``, ``ODOOOPS_ATTEMPT`` (1 for
    the first claim), ``ODOOOPS_METADATA`` (the run's metadata as JSON), ``ODOOOPS_ARTIFACTS_FILE``
    and ``ODOOOPS_WORKER_ID``. The worker's credentials (``DATABASE_URL``,
    ``SUPABASE_SERVICE_ROLE_KEY``, ``SUPABASE_SECRET_KEY``, ``SUPABASE_KEY``) are removed from that
    environment, since a build runs the project's own code; ``--keep-credentials`` passes them on.
    A ``--command`` that does not exist or is not executable stops the worker at start (exit 2)
    instead of failing every run it would claim.

Output → ``ops.run_events``
    Every line of stdout and stderr becomes one event, in the order the lines arrived, within a
    fraction of a second (batches of up to 500 lines or 200 ms; up to 5000 per call after an
    outage). Payload: ``{"stream": "stdout"|"stderr", "line": <line number in that stream>}``.
    Level: a leading ``[debug]``, ``[info]``, ``[warn]``/``[warning]`` or ``[error]`` (any case) sets
    it and is removed from the message; otherwise ``info`` on both streams. Unprefixed stderr is
    not ``warn`` because most tools (git, docker, pip, Python logging) write progress there; the
    payload's ``stream`` still tells the two apart. A line longer than 64 KiB is stored as several
    events with the same ``line`` and ``"part": 1, 2, ...`` (concatenated, they give the line back).
    Invalid UTF-8 becomes U+FFFD, and so does NUL (PostgreSQL text cannot hold it). Memory stays
    bounded: when the database is slower than the command (or away), the readers stop reading and
    the command blocks on its next write until the events are stored. Events written by the worker
    itself carry ``payload.kind`` (``command``, ``worker``, ``command_failed``, ...).

Artifacts channel
    The command appends one JSON object per line to the file named by ``$ODOOOPS_ARTIFACTS_FILE``
    (created empty, removed after the run)::

        {"artifact_type": "image", "storage_path": "ghcr.io/org/odoo:abc1234",
         "digest": "sha256:<64 hex>", "size_bytes": 123456789, "metadata": {"tag": "abc1234"}}

    ``artifact_type`` (image, sbom, logs, evidence, manifest) and ``storage_path`` are required;
    ``digest`` (``sha256:<64 hex>`` or ``sha512:<128 hex>``), ``size_bytes`` and ``metadata`` (an
    object) are optional; no other key is allowed. The worker reads the file every second while the
    command runs and once more after it exits, and registers each line with ``add_artifact``, so
    artifacts show up during a long build. Write each line whole (one ``echo ... >> "$FILE"``). An
    invalid line becomes a ``warn`` event naming its line number; the run is not failed for it.

Outcome
    Exit code 0 → ``finish_run(success)``. Anything else → an ``error`` event with the exit code and
    the last 20 lines of stderr, then ``finish_run(failed, exit_code)``; a command killed by signal N
    is recorded as exit code 128 + N. All events and artifacts are stored before the run is
    finished. The SQL only lets the worker holding a running run finish it: when that is refused
    (the run was cancelled or recovered meanwhile) the worker logs ``finish_refused`` and goes on.
    Processes the command left in its process group are killed when the run ends.

Heartbeats, cancellation, recovery
    While a run executes the worker calls ``heartbeat_run`` every ``--heartbeat-interval`` (10 s)
    and reads the run every ``--cancel-check-interval`` (2 s); with a direct connection a
    ``ops_run_cancelled`` notification is noticed within 0.2 s. A cancelled run, or one no longer
    ``claimed``/``running`` by this worker (recovered, requeued, claimed by another), gets its
    command's process group SIGTERM, then SIGKILL after ``--kill-grace`` (10 s); an event records
    it and the worker takes the next run. Every worker process also calls
    ``recover_stalled_runs(--lease, --max-attempts)`` at start and then twice per lease (at most
    every 30 s): a claimed or running run whose heartbeat is older than the lease (60 s) is requeued
    while its ``attempt`` (the number of claims so far) is below ``--max-attempts`` (3), and failed
    with the reason otherwise. A transient database error during a heartbeat is retried a second
    later; a database away for longer than the lease can therefore cost the run (it is recovered,
    and this worker then sees it is no longer its own and stops the command).

Stopping the worker (SIGTERM / SIGINT)
    The worker stops claiming at once. A running run may finish within ``--shutdown-grace`` (30 s);
    after that its command is terminated (SIGTERM, SIGKILL after ``--kill-grace``) and the run is
    finished as ``failed`` with a reason naming the worker and the signal. Failing rather than
    requeuing: the run was started, so its command may have had side effects (half a deploy) that
    an automatic second attempt could repeat; someone deliberately stopped the worker and can queue
    the run again, and workers have no SQL function to give a run back. ``recover_stalled_runs``
    requeues only when a worker vanished without a word. A second signal skips the grace (the
    reason then says so); signals that arrive while the worker is stopping only hurry it. The
    worker exits 0. Recording the outcome is tried for at most 10 s past both graces.

``--once``
    Each slot claims at most one run; the worker exits 0 when that run was processed (whatever its
    outcome: the run's status is in the database) and also when no run was queued. Non-zero exit
    codes are the worker's own problems: 2 for a bad option or missing configuration, 1 for a
    fatal error (refused credentials, missing migration) or a database that stayed unreachable
    for 30 s (without ``--once`` the worker waits for it however long it takes).

Reconnecting without losing anything
    Every call that fails transiently is tried again until the database is back: claims (with
    backoff), heartbeats, events, artifacts, ``finish_run``. Events wait in memory (bounded) while
    the database is away. Every write carries a repeat key, kept until it is answered: a claim its
    claim token, a batch of events its batch key, an artifact line its artifact key. So a call
    whose answer was lost is simply sent again: the database recognises it and answers as the
    first time (the claimed run, the batch's last sequence number, the stored artifact), storing
    nothing twice.

Attempt fencing
    Every write names the attempt the run's claim returned (``$ODOOOPS_ATTEMPT``). When the worker
    stopped heartbeating for longer than the lease and the run was requeued (or claimed again),
    the database refuses the writes of the old attempt; the worker stops the command and drops
    them, so a straggler never mixes its log, artifacts or result into the current attempt.

Logs
    One line per action on stderr: ``ts=... level=... worker=... action=... key=value ...``.
"""

from odooops_action.worker.cli import main

__all__ = ["main"]
