-- OdooOps run queue: schema `ops`.
--
-- The database owns the rules. Every client (Supabase REST via PostgREST, psql, the worker over a
-- direct connection) goes through the same constraints, triggers and functions:
--   * state machine  queued -> claimed -> running -> success | failed | cancelled
--     (cancel from queued/claimed/running; recovery may put claimed/running back to queued or fail
--     them), enforced by trigger ops.tg_runs_guard for every UPDATE, REST or SQL;
--   * run ids  run-YYYYMMDD-HHMMSS-<sha7>, and on a collision in the same second for the same
--     commit  run-YYYYMMDD-HHMMSS-<sha7>-2, -3, ... (never fails, never overwrites);
--   * events carry a per-run sequence number `seq` assigned under the run's row lock, so a reader
--     that asks for "seq > cursor" sees every event exactly once and in order;
--   * errors use SQLSTATEs that PostgREST maps to HTTP statuses: PT404 -> 404 (missing run,
--     project or environment), PT409 -> 409 (illegal state change), PT400 -> 400 (bad input).
--
--   * only finished runs can be deleted on their own (deleting a project or environment removes
--     its runs); events are append-only and numbered by the database.
--
-- Security: RLS on every table with no policy (anon/authenticated see and write nothing);
-- `service_role` (BYPASSRLS) gets explicit grants, since BYPASSRLS does not imply privileges,
-- and no write privilege on the counters (runs.event_seq, runs.attempt, run_events.seq).

-- Fail fast instead of queueing behind a long lock (workers poll ops.runs constantly).
set lock_timeout = '5s';
set statement_timeout = '120s';

-- Supabase has these roles; a plain PostgreSQL (see docs/SELF_HOSTING.md) gets them here so the
-- grants below apply unchanged. Creating them needs a superuser, which plain installs migrate as.
do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'anon') then
        create role anon nologin noinherit;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'authenticated') then
        create role authenticated nologin noinherit;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'service_role') then
        create role service_role nologin noinherit bypassrls;
    end if;
end;
$$;

create schema if not exists ops;

-- ---------------------------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------------------------

create table ops.projects (
    project_id text primary key
        constraint projects_project_id_format check (project_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$'),
    name text,
    repository text,
    metadata jsonb not null default '{}'::jsonb
        constraint projects_metadata_object check (jsonb_typeof(metadata) = 'object'),
    created_at timestamptz not null default now()
);

create table ops.environments (
    project_id text not null references ops.projects (project_id) on delete cascade,
    env_id text not null
        constraint environments_env_id_format check (env_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
    name text,
    metadata jsonb not null default '{}'::jsonb
        constraint environments_metadata_object check (jsonb_typeof(metadata) = 'object'),
    created_at timestamptz not null default now(),
    primary key (project_id, env_id)
);

create table ops.runs (
    run_id text primary key
        constraint runs_run_id_format check (run_id ~ '^run-[0-9]{8}-[0-9]{6}-[0-9a-f]{7}(-[1-9][0-9]{0,3})?$'),
    project_id text not null references ops.projects (project_id) on delete cascade,
    env_id text not null,
    workflow_type text not null
        constraint runs_workflow_type_valid check (workflow_type in ('build', 'deploy', 'test')),
    git_sha text not null
        constraint runs_git_sha_format check (git_sha ~ '^[0-9a-f]{40}$'),
    git_ref text not null
        constraint runs_git_ref_length check (length(git_ref) between 1 and 255),
    status text not null default 'queued'
        constraint runs_status_valid
        check (status in ('queued', 'claimed', 'running', 'success', 'failed', 'cancelled')),
    claimed_by text
        constraint runs_claimed_by_length check (length(claimed_by) between 1 and 200),
    queued_at timestamptz not null default now(),
    claimed_at timestamptz,
    started_at timestamptz,
    finished_at timestamptz,
    heartbeat_at timestamptz,
    attempt integer not null default 0 constraint runs_attempt_nonnegative check (attempt >= 0),
    exit_code integer,
    status_reason text,
    created_by text,
    idempotency_key text
        constraint runs_idempotency_key_length check (length(idempotency_key) between 1 and 255),
    event_seq bigint not null default 0 constraint runs_event_seq_nonnegative check (event_seq >= 0),
    metadata jsonb not null default '{}'::jsonb
        constraint runs_metadata_object check (jsonb_typeof(metadata) = 'object'),
    foreign key (project_id, env_id) references ops.environments (project_id, env_id) on delete cascade,
    -- Timestamps and the claim always agree with the status, whoever wrote the row.
    constraint runs_state_consistent check (
        (status = 'queued' and claimed_by is null and claimed_at is null
            and started_at is null and finished_at is null)
        or (status = 'claimed' and claimed_by is not null and claimed_at is not null
            and started_at is null and finished_at is null)
        or (status = 'running' and claimed_by is not null and started_at is not null
            and finished_at is null)
        or (status = 'success' and started_at is not null and finished_at is not null)
        or (status in ('failed', 'cancelled') and finished_at is not null)
    )
);

comment on table ops.runs is
    'OdooOps build/deploy runs. State machine enforced by trigger ops.tg_runs_guard; use the ops.* functions.';

-- Claiming scans only queued rows: the partial index stays as small as the queue however long
-- the history grows.
create index runs_queue_idx on ops.runs (queued_at, run_id) where status = 'queued';
-- Stalled-run recovery scans only active rows.
create index runs_active_heartbeat_idx on ops.runs (heartbeat_at) where status in ('claimed', 'running');
create unique index runs_idempotency_key_idx on ops.runs (idempotency_key) where idempotency_key is not null;
create index runs_project_recent_idx on ops.runs (project_id, queued_at desc);
create index runs_env_fk_idx on ops.runs (project_id, env_id);

create table ops.run_events (
    event_id text primary key default ('evt-' || gen_random_uuid())
        constraint run_events_event_id_format check (event_id ~ '^evt-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'),
    run_id text not null references ops.runs (run_id) on delete cascade,
    seq bigint not null constraint run_events_seq_positive check (seq > 0),
    level text not null default 'info'
        constraint run_events_level_valid check (level in ('debug', 'info', 'warn', 'error')),
    message text not null,
    payload jsonb not null default '{}'::jsonb
        constraint run_events_payload_object check (jsonb_typeof(payload) = 'object'),
    created_at timestamptz not null default now(),
    -- Serves "events of run X after seq N, in order": one index range scan per poll.
    constraint run_events_run_seq_key unique (run_id, seq)
);

create table ops.artifacts (
    artifact_id text primary key default ('art-' || gen_random_uuid())
        constraint artifacts_artifact_id_format check (artifact_id ~ '^art-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'),
    run_id text not null references ops.runs (run_id) on delete cascade,
    artifact_type text not null
        constraint artifacts_type_valid check (artifact_type in ('image', 'sbom', 'logs', 'evidence', 'manifest')),
    storage_path text not null
        constraint artifacts_storage_path_length check (length(storage_path) between 1 and 2048),
    digest text
        constraint artifacts_digest_format check (digest ~ '^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$'),
    size_bytes bigint constraint artifacts_size_nonnegative check (size_bytes >= 0),
    metadata jsonb not null default '{}'::jsonb
        constraint artifacts_metadata_object check (jsonb_typeof(metadata) = 'object'),
    created_at timestamptz not null default now()
);

create index artifacts_run_idx on ops.artifacts (run_id, created_at);

-- ---------------------------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------------------------

create function ops.raise_error(code text, message text, hint text default null)
returns void
language plpgsql
set search_path = ''
as $$
begin
    raise exception using errcode = raise_error.code, message = raise_error.message,
        hint = coalesce(raise_error.hint, '');
end;
$$;

create function ops.is_terminal(status text)
returns boolean
language sql
immutable
set search_path = ''
as $$ select is_terminal.status in ('success', 'failed', 'cancelled') $$;

-- Timestamps in messages: one readable form whatever the session's DateStyle or TimeZone.
create function ops.utc_text(at timestamptz)
returns text
language sql
stable
set search_path = ''
as $$ select to_char(utc_text.at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC' $$;

create function ops.allowed_transition(from_status text, to_status text)
returns boolean
language sql
immutable
set search_path = ''
as $$
    select (allowed_transition.from_status, allowed_transition.to_status) in (
        ('queued', 'claimed'), ('queued', 'cancelled'),
        ('claimed', 'running'), ('claimed', 'cancelled'), ('claimed', 'failed'), ('claimed', 'queued'),
        ('running', 'success'), ('running', 'failed'), ('running', 'cancelled'), ('running', 'queued')
    )
$$;

-- The base id for a run queued now for a commit; create_run adds -2, -3, ... on collision.
create function ops.base_run_id(git_sha text, at timestamptz)
returns text
language sql
stable
set search_path = ''
as $$
    select 'run-' || to_char(base_run_id.at at time zone 'UTC', 'YYYYMMDD-HH24MISS') || '-'
        || left(base_run_id.git_sha, 7)
$$;

create function ops.raise_run_not_found(run_id text)
returns void
language plpgsql
set search_path = ''
as $$
begin
    perform ops.raise_error('PT404', format('run %s not found', raise_run_not_found.run_id),
        'Check the run id (format run-YYYYMMDD-HHMMSS-<sha7>); runs are listed in ops.runs.');
end;
$$;

create function ops.require_run(run_id text)
returns ops.runs
language plpgsql
stable
set search_path = ''
as $$
declare
    found_run ops.runs;
begin
    select * into found_run from ops.runs r where r.run_id = require_run.run_id;
    if not found then
        perform ops.raise_run_not_found(require_run.run_id);
    end if;
    return found_run;
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- Triggers: the state machine, event sequencing, status events, notifications
-- ---------------------------------------------------------------------------------------------

create function ops.tg_runs_before_insert()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    if new.status is distinct from 'queued' then
        perform ops.raise_error('PT409',
            format('a run is created in status queued, not %s', new.status),
            'Insert the run as queued; workers move it on with ops.claim_next_run.');
    end if;
    if new.run_id is null then
        new.run_id := ops.base_run_id(new.git_sha, clock_timestamp());
    end if;
    new.queued_at := coalesce(new.queued_at, now());
    new.claimed_by := null;
    new.claimed_at := null;
    new.started_at := null;
    new.finished_at := null;
    new.heartbeat_at := null;
    new.attempt := 0;
    new.event_seq := 0;
    new.exit_code := null;
    return new;
end;
$$;

create function ops.tg_runs_guard()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    if (new.run_id, new.project_id, new.env_id, new.workflow_type, new.git_sha, new.git_ref,
        new.queued_at, new.created_by, new.idempotency_key)
       is distinct from
       (old.run_id, old.project_id, old.env_id, old.workflow_type, old.git_sha, old.git_ref,
        old.queued_at, old.created_by, old.idempotency_key) then
        perform ops.raise_error('PT409',
            format('run %s: its identity (id, project, environment, workflow, commit, ref, queue time,'
                || ' creator, idempotency key) cannot be changed', old.run_id),
            'Queue a new run for another commit, ref, workflow or environment.');
    end if;

    if ops.is_terminal(old.status) then
        -- Only the event counter of a finished run may move (late log lines are still recorded).
        if (new.status, new.claimed_by, new.claimed_at, new.started_at, new.finished_at, new.heartbeat_at,
            new.attempt, new.exit_code, new.status_reason, new.metadata)
           is distinct from
           (old.status, old.claimed_by, old.claimed_at, old.started_at, old.finished_at, old.heartbeat_at,
            old.attempt, old.exit_code, old.status_reason, old.metadata) then
            perform ops.raise_error('PT409',
                format('run %s is already %s (finished at %s): a finished run cannot be changed',
                    old.run_id, old.status, ops.utc_text(old.finished_at)),
                'Queue a new run instead.');
        end if;
        return new;
    end if;

    if new.status is distinct from old.status then
        if not ops.allowed_transition(old.status, new.status) then
            perform ops.raise_error('PT409',
                format('illegal status change for run %s: %s -> %s', old.run_id, old.status, new.status),
                'Allowed: queued -> claimed -> running -> success|failed, and cancelled from queued, claimed or running.');
        end if;
        case new.status
            when 'claimed' then
                if new.claimed_by is null then
                    perform ops.raise_error('PT400', format('run %s: claimed_by is required to claim a run', old.run_id));
                end if;
                new.claimed_at := now();
                new.heartbeat_at := now();
                new.attempt := old.attempt + 1;
            when 'running' then
                new.started_at := coalesce(new.started_at, now());
                new.heartbeat_at := now();
            when 'queued' then
                -- Recovery: the run goes back to the queue for another attempt.
                new.claimed_by := null;
                new.claimed_at := null;
                new.started_at := null;
                new.heartbeat_at := null;
            else
                new.finished_at := coalesce(new.finished_at, now());
        end case;
    elsif new.claimed_by is distinct from old.claimed_by and old.status in ('claimed', 'running') then
        perform ops.raise_error('PT409',
            format('run %s is claimed by %s and cannot be re-assigned to %s', old.run_id, old.claimed_by,
                new.claimed_by),
            'Cancel the run, or requeue it (status queued) so that another worker can claim it.');
    end if;
    return new;
end;
$$;

create function ops.tg_runs_record_status()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
    previous text := case when tg_op = 'INSERT' then null else old.status end;
    text_of_change text;
begin
    text_of_change := case new.status
        when 'queued' then
            case when previous is null then 'Run queued' else 'Run requeued' end
        when 'claimed' then format('Worker %s claimed run (attempt %s)', new.claimed_by, new.attempt)
        when 'running' then format('Run started on worker %s', new.claimed_by)
        when 'success' then 'Run succeeded'
        when 'failed' then 'Run failed'
        when 'cancelled' then 'Run cancelled'
    end;
    if new.status_reason is not null and new.status in ('queued', 'failed', 'cancelled', 'success')
       and previous is not null then
        text_of_change := text_of_change || ': ' || new.status_reason;
    end if;
    insert into ops.run_events (run_id, level, message, payload)
    values (
        new.run_id,
        case when new.status = 'failed' then 'error' when previous = 'running' and new.status = 'queued' then 'warn'
             else 'info' end,
        text_of_change,
        jsonb_strip_nulls(jsonb_build_object(
            'kind', 'status', 'from', previous, 'to', new.status, 'worker', new.claimed_by,
            'attempt', new.attempt, 'exit_code', new.exit_code, 'reason', new.status_reason))
    );
    if new.status = 'queued' then
        perform pg_notify('ops_run_queued', new.run_id);
    elsif new.status = 'cancelled' then
        perform pg_notify('ops_run_cancelled', new.run_id);
    end if;
    return null;
end;
$$;

-- SECURITY DEFINER: the event counter (ops.runs.event_seq) and run_events.seq are not writable
-- by service_role (see Security below), so that no client can pick a number that would hide events
-- from a reader's cursor; this trigger and ops.append_events are the only writers.
create function ops.tg_run_events_sequence()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    if new.seq is null then
        -- The row lock taken here is held until commit, so sequence numbers of one run become
        -- visible in order: a reader never sees seq N+1 before seq N.
        update ops.runs r set event_seq = r.event_seq + 1 where r.run_id = new.run_id
        returning r.event_seq into new.seq;
        if not found then
            perform ops.raise_run_not_found(new.run_id);
        end if;
    end if;
    return new;
end;
$$;

-- A worker may hold a queued, claimed or running run, and a waiter follows it: only a finished
-- run can be deleted on its own. Deleting its project or environment (a deliberate teardown, at
-- trigger depth 2 through the foreign key's cascade) removes the runs whatever their status.
create function ops.tg_runs_before_delete()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    if pg_trigger_depth() = 1 and not ops.is_terminal(old.status) then
        perform ops.raise_error('PT409',
            format('run %s is %s: only a finished run can be deleted', old.run_id, old.status),
            format('Cancel it first (odooops destroy %s, or ops.cancel_run), then delete it.', old.run_id));
    end if;
    return old;
end;
$$;

create trigger runs_before_insert before insert on ops.runs
    for each row execute function ops.tg_runs_before_insert();
create trigger runs_guard before update on ops.runs
    for each row execute function ops.tg_runs_guard();
create trigger runs_record_insert after insert on ops.runs
    for each row execute function ops.tg_runs_record_status();
create trigger runs_record_status after update of status on ops.runs
    for each row when (old.status is distinct from new.status)
    execute function ops.tg_runs_record_status();
create trigger run_events_sequence before insert on ops.run_events
    for each row execute function ops.tg_run_events_sequence();
create trigger runs_before_delete before delete on ops.runs
    for each row execute function ops.tg_runs_before_delete();

-- ---------------------------------------------------------------------------------------------
-- Operations (PostgREST: POST /rest/v1/rpc/<name>, Content-Profile: ops)
-- ---------------------------------------------------------------------------------------------

create function ops.create_run(
    project_id text,
    workflow_type text,
    git_ref text,
    git_sha text,
    env_id text default 'dev',
    created_by text default null,
    idempotency_key text default null,
    metadata jsonb default '{}'::jsonb
)
returns jsonb
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
    new_run ops.runs;
    base_id text;
    suffix integer := 1;
begin
    if create_run.git_sha is null or create_run.git_sha !~ '^[0-9a-f]{40}$' then
        perform ops.raise_error('PT400',
            format('git_sha must be a full 40-character lower-case hex commit SHA, got %s',
                coalesce(quote_literal(create_run.git_sha), 'null')));
    end if;
    if create_run.workflow_type is null or create_run.workflow_type not in ('build', 'deploy', 'test') then
        perform ops.raise_error('PT400',
            format('workflow_type must be one of build, deploy, test, got %s',
                coalesce(quote_literal(create_run.workflow_type), 'null')));
    end if;
    if create_run.git_ref is null or length(create_run.git_ref) not between 1 and 255 then
        perform ops.raise_error('PT400', 'git_ref must be a branch or tag name of 1 to 255 characters');
    end if;
    if create_run.metadata is not null and jsonb_typeof(create_run.metadata) <> 'object' then
        perform ops.raise_error('PT400', 'metadata must be a JSON object');
    end if;

    if create_run.idempotency_key is not null then
        select * into new_run from ops.runs r where r.idempotency_key = create_run.idempotency_key;
        if found then
            return ops.existing_run_for_key(new_run, create_run.project_id, create_run.env_id,
                create_run.workflow_type, create_run.git_sha);
        end if;
    end if;

    perform 1 from ops.projects p where p.project_id = create_run.project_id;
    if not found then
        perform ops.raise_error('PT404', format('project %s not found in ops.projects', create_run.project_id),
            'Register the project first (insert a row into ops.projects).');
    end if;
    perform 1 from ops.environments e
        where e.project_id = create_run.project_id and e.env_id = coalesce(create_run.env_id, 'dev');
    if not found then
        perform ops.raise_error('PT404',
            format('environment %s not found for project %s in ops.environments',
                coalesce(create_run.env_id, 'dev'), create_run.project_id),
            'Register the environment first (insert a row into ops.environments).');
    end if;

    base_id := ops.base_run_id(create_run.git_sha, clock_timestamp());
    loop
        insert into ops.runs (run_id, project_id, env_id, workflow_type, git_sha, git_ref, created_by,
                              idempotency_key, metadata)
        values (
            case when suffix = 1 then base_id else base_id || '-' || suffix end,
            create_run.project_id, coalesce(create_run.env_id, 'dev'), create_run.workflow_type,
            create_run.git_sha, create_run.git_ref, create_run.created_by, create_run.idempotency_key,
            coalesce(create_run.metadata, '{}'::jsonb) || jsonb_strip_nulls(jsonb_build_object(
                'workflow_type', create_run.workflow_type, 'git_ref', create_run.git_ref,
                'created_by', create_run.created_by))
        )
        on conflict do nothing
        returning * into new_run;
        exit when found;
        -- Either the id is taken (another run of this commit in the same second) or a concurrent
        -- create with the same idempotency key won the race.
        if create_run.idempotency_key is not null then
            select * into new_run from ops.runs r where r.idempotency_key = create_run.idempotency_key;
            if found then
                return ops.existing_run_for_key(new_run, create_run.project_id, create_run.env_id,
                    create_run.workflow_type, create_run.git_sha);
            end if;
        end if;
        suffix := suffix + 1;
        if suffix > 9999 then
            perform ops.raise_error('PT409', format('more than 9999 runs of %s queued in one second', base_id),
                'Retry in a second.');
        end if;
    end loop;
    -- Re-read: the insert trigger has since recorded the "Run queued" event (event_seq moved).
    select * into new_run from ops.runs r where r.run_id = new_run.run_id;
    return jsonb_build_object('run', to_jsonb(new_run), 'created', true);
end;
$$;

create function ops.existing_run_for_key(
    existing ops.runs, project_id text, env_id text, workflow_type text, git_sha text
)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
begin
    if (existing.project_id, existing.env_id, existing.workflow_type, existing.git_sha)
       is distinct from
       (existing_run_for_key.project_id, coalesce(existing_run_for_key.env_id, 'dev'),
        existing_run_for_key.workflow_type, existing_run_for_key.git_sha) then
        perform ops.raise_error('PT409',
            format('idempotency key %s was already used for run %s (%s %s of %s in %s)',
                quote_literal(existing.idempotency_key), existing.run_id, existing.workflow_type,
                existing.project_id, left(existing.git_sha, 7), existing.env_id),
            'Use a different idempotency_key for a different run.');
    end if;
    return jsonb_build_object('run', to_jsonb(existing), 'created', false);
end;
$$;

create function ops.poll_run(run_id text, after_seq bigint default 0, max_events integer default 1000)
returns jsonb
language plpgsql
-- stable: every statement below reads the same snapshot, so the run row and its events agree.
stable
set search_path = ''
as $$
declare
    the_run ops.runs := ops.require_run(poll_run.run_id);
    page_size integer := least(greatest(coalesce(poll_run.max_events, 1000), 0), 1000);
    events jsonb;
    last_seq bigint;
begin
    select coalesce(jsonb_agg(to_jsonb(e) order by e.seq), '[]'::jsonb), max(e.seq)
      into events, last_seq
      from (select * from ops.run_events ev
             where ev.run_id = poll_run.run_id and ev.seq > coalesce(poll_run.after_seq, 0)
             order by ev.seq
             limit page_size) e;
    return jsonb_build_object(
        'run', to_jsonb(the_run),
        'events', events,
        'artifacts', (select coalesce(jsonb_agg(to_jsonb(a) order by a.created_at, a.artifact_id), '[]'::jsonb)
                        from ops.artifacts a where a.run_id = poll_run.run_id),
        'has_more', the_run.event_seq > coalesce(last_seq, greatest(coalesce(poll_run.after_seq, 0), the_run.event_seq))
    );
end;
$$;

create function ops.cancel_run(run_id text, reason text default null, cancelled_by text default null)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    the_run ops.runs;
begin
    select * into the_run from ops.runs r where r.run_id = cancel_run.run_id for update;
    if not found then
        perform ops.raise_run_not_found(cancel_run.run_id);
    end if;
    if the_run.status = 'cancelled' then
        return jsonb_build_object('run', to_jsonb(the_run), 'outcome', 'already_cancelled');
    end if;
    if the_run.status in ('success', 'failed') then
        perform ops.raise_error('PT409',
            format('run %s already finished as %s at %s; a finished run cannot be cancelled',
                the_run.run_id, the_run.status, ops.utc_text(the_run.finished_at)),
            'Nothing is left to stop; queue a new run to run it again.');
    end if;
    update ops.runs r
       set status = 'cancelled',
           status_reason = 'by ' || coalesce(nullif(cancel_run.cancelled_by, ''), current_user::text)
               || coalesce(' (' || nullif(cancel_run.reason, '') || ')', '')
     where r.run_id = cancel_run.run_id
    returning * into the_run;
    return jsonb_build_object('run', to_jsonb(the_run), 'outcome', 'cancelled');
end;
$$;

create function ops.claim_next_run(
    worker_id text,
    project_id text default null,
    env_id text default null,
    workflow_type text default null
)
returns setof ops.runs
language plpgsql
set search_path = ''
as $$
begin
    if claim_next_run.worker_id is null or length(claim_next_run.worker_id) not between 1 and 200 then
        perform ops.raise_error('PT400', 'worker_id must be a non-empty string of at most 200 characters');
    end if;
    return query
    update ops.runs r
       set status = 'claimed', claimed_by = claim_next_run.worker_id, status_reason = null
     where r.run_id = (
        select q.run_id from ops.runs q
         where q.status = 'queued'
           and (claim_next_run.project_id is null or q.project_id = claim_next_run.project_id)
           and (claim_next_run.env_id is null or q.env_id = claim_next_run.env_id)
           and (claim_next_run.workflow_type is null or q.workflow_type = claim_next_run.workflow_type)
         order by q.queued_at, q.run_id
         limit 1
         for update skip locked)
    returning r.*;
end;
$$;

create function ops.not_held_by(the_run ops.runs, worker_id text, wanted text)
returns void
language plpgsql
set search_path = ''
as $$
begin
    perform ops.raise_error('PT409',
        format('run %s is %s (claimed by %s), so worker %s cannot %s it',
            the_run.run_id, the_run.status, coalesce(the_run.claimed_by, 'nobody'), not_held_by.worker_id,
            not_held_by.wanted),
        'Only the worker that claimed a run can start or finish it; claim another run.');
end;
$$;

create function ops.start_run(run_id text, worker_id text)
returns ops.runs
language plpgsql
set search_path = ''
as $$
declare
    the_run ops.runs;
begin
    update ops.runs r set status = 'running'
     where r.run_id = start_run.run_id and r.status = 'claimed' and r.claimed_by = start_run.worker_id
    returning * into the_run;
    if found then
        return the_run;
    end if;
    the_run := ops.require_run(start_run.run_id);
    if the_run.status = 'running' and the_run.claimed_by = start_run.worker_id then
        return the_run;  -- a retried call: already done
    end if;
    perform ops.not_held_by(the_run, start_run.worker_id, 'start');
    return null;
end;
$$;

create function ops.heartbeat_run(run_id text, worker_id text)
returns ops.runs
language plpgsql
set search_path = ''
as $$
declare
    the_run ops.runs;
begin
    update ops.runs r set heartbeat_at = now()
     where r.run_id = heartbeat_run.run_id and r.claimed_by = heartbeat_run.worker_id
       and r.status in ('claimed', 'running')
    returning * into the_run;
    if found then
        return the_run;
    end if;
    -- Not (or no longer) this worker's: the caller reads the status (cancelled, requeued, ...).
    return ops.require_run(heartbeat_run.run_id);
end;
$$;

create function ops.finish_run(
    run_id text,
    worker_id text,
    status text,
    exit_code integer default null,
    reason text default null
)
returns ops.runs
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
    the_run ops.runs;
begin
    if finish_run.status is null or finish_run.status not in ('success', 'failed') then
        perform ops.raise_error('PT400',
            format('status must be success or failed, got %s', coalesce(quote_literal(finish_run.status), 'null')));
    end if;
    update ops.runs r
       set status = finish_run.status, exit_code = finish_run.exit_code, status_reason = finish_run.reason
     where r.run_id = finish_run.run_id and r.claimed_by = finish_run.worker_id
       and (r.status = 'running' or (r.status = 'claimed' and finish_run.status = 'failed'))
    returning * into the_run;
    if found then
        return the_run;
    end if;
    the_run := ops.require_run(finish_run.run_id);
    if the_run.status = finish_run.status and the_run.claimed_by = finish_run.worker_id then
        return the_run;  -- a retried call: already done
    end if;
    perform ops.not_held_by(the_run, finish_run.worker_id, 'finish');
    return null;
end;
$$;

-- SECURITY DEFINER: it moves the event counter and writes seq, which service_role cannot.
create function ops.append_events(run_id text, events jsonb)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
    event_count integer;
    last_seq bigint;
begin
    if append_events.events is null or jsonb_typeof(append_events.events) <> 'array' then
        perform ops.raise_error('PT400', 'events must be a JSON array of {level, message, payload} objects');
    end if;
    event_count := jsonb_array_length(append_events.events);
    if event_count > 5000 then
        perform ops.raise_error('PT400', format('at most 5000 events per call, got %s', event_count));
    end if;
    if exists (select 1 from jsonb_array_elements(append_events.events) e(v)
                where jsonb_typeof(e.v) <> 'object' or jsonb_typeof(e.v -> 'message') is distinct from 'string'
                   or coalesce(e.v ->> 'level', 'info') not in ('debug', 'info', 'warn', 'error')
                   or jsonb_typeof(coalesce(e.v -> 'payload', '{}'::jsonb)) <> 'object') then
        perform ops.raise_error('PT400',
            'each event needs a string message, a level among debug, info, warn, error, and an object payload');
    end if;
    -- One counter bump for the whole batch, under the run's row lock (see tg_run_events_sequence).
    update ops.runs r set event_seq = r.event_seq + event_count where r.run_id = append_events.run_id
    returning r.event_seq into last_seq;
    if not found then
        perform ops.raise_run_not_found(append_events.run_id);
    end if;
    insert into ops.run_events (run_id, seq, level, message, payload)
    select append_events.run_id, last_seq - event_count + e.ordinality,
           coalesce(e.v ->> 'level', 'info'), e.v ->> 'message', coalesce(e.v -> 'payload', '{}'::jsonb)
      from jsonb_array_elements(append_events.events) with ordinality as e(v, ordinality);
    return last_seq;
end;
$$;

create function ops.add_artifact(
    run_id text,
    artifact_type text,
    storage_path text,
    digest text default null,
    size_bytes bigint default null,
    metadata jsonb default '{}'::jsonb
)
returns ops.artifacts
language plpgsql
set search_path = ''
as $$
declare
    artifact ops.artifacts;
begin
    perform ops.require_run(add_artifact.run_id);
    if add_artifact.artifact_type is null
       or add_artifact.artifact_type not in ('image', 'sbom', 'logs', 'evidence', 'manifest') then
        perform ops.raise_error('PT400',
            format('artifact_type must be one of image, sbom, logs, evidence, manifest, got %s',
                coalesce(quote_literal(add_artifact.artifact_type), 'null')));
    end if;
    if add_artifact.digest is not null and add_artifact.digest !~ '^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$' then
        perform ops.raise_error('PT400', 'digest must look like sha256:<64 hex> or sha512:<128 hex>');
    end if;
    insert into ops.artifacts (run_id, artifact_type, storage_path, digest, size_bytes, metadata)
    values (add_artifact.run_id, add_artifact.artifact_type, add_artifact.storage_path, add_artifact.digest,
            add_artifact.size_bytes, coalesce(add_artifact.metadata, '{}'::jsonb))
    returning * into artifact;
    return artifact;
end;
$$;

-- A run whose worker stopped heartbeating for longer than the lease goes back to the queue while
-- it has attempts left (attempt counts claims), and fails with a clear reason when it has none.
create function ops.recover_stalled_runs(lease_seconds integer default 60, max_attempts integer default 3)
returns setof ops.runs
language plpgsql
set search_path = ''
as $$
declare
    stalled ops.runs;
    recovered ops.runs;
    why text;
begin
    if recover_stalled_runs.lease_seconds is null or recover_stalled_runs.lease_seconds < 1 then
        perform ops.raise_error('PT400', 'lease_seconds must be a positive number of seconds');
    end if;
    if recover_stalled_runs.max_attempts is null or recover_stalled_runs.max_attempts < 1 then
        perform ops.raise_error('PT400', 'max_attempts must be at least 1');
    end if;
    for stalled in
        select * from ops.runs r
         where r.status in ('claimed', 'running')
           and r.heartbeat_at < now() - make_interval(secs => recover_stalled_runs.lease_seconds)
         order by r.heartbeat_at
         for update skip locked
    loop
        why := format('worker %s sent no heartbeat for %ss (last at %s) during attempt %s of %s',
            stalled.claimed_by, recover_stalled_runs.lease_seconds, ops.utc_text(stalled.heartbeat_at), stalled.attempt,
            recover_stalled_runs.max_attempts);
        if stalled.attempt >= recover_stalled_runs.max_attempts then
            update ops.runs r set status = 'failed', status_reason = why || '; no attempts left'
             where r.run_id = stalled.run_id returning * into recovered;
        else
            update ops.runs r set status = 'queued', status_reason = why || '; requeued'
             where r.run_id = stalled.run_id returning * into recovered;
        end if;
        return next recovered;
    end loop;
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- Security
-- ---------------------------------------------------------------------------------------------

alter table ops.projects enable row level security;
alter table ops.environments enable row level security;
alter table ops.runs enable row level security;
alter table ops.run_events enable row level security;
alter table ops.artifacts enable row level security;
-- No policies: anon and authenticated (which do not bypass RLS) can see and change nothing even
-- if a privilege were granted by mistake. service_role has BYPASSRLS.

revoke all on schema ops from public;
revoke all on all tables in schema ops from public, anon, authenticated;
revoke all on all functions in schema ops from public, anon, authenticated;

grant usage on schema ops to service_role;
grant select, insert, update, delete on ops.projects, ops.environments, ops.artifacts to service_role;
-- Column privileges close what the triggers cannot tell apart from the functions' own writes:
-- the counters event_seq (the events' sequence) and attempt (claims, for max_attempts) are moved
-- only by the database; identity columns stay writable so that the guard explains its refusal.
grant select, insert, delete on ops.runs to service_role;
grant update (run_id, project_id, env_id, workflow_type, git_sha, git_ref, queued_at, created_by,
              idempotency_key, status, claimed_by, claimed_at, started_at, finished_at, heartbeat_at,
              exit_code, status_reason, metadata)
    on ops.runs to service_role;
-- Events are an append-only log numbered by the database: insert without seq, never edit or
-- delete (they go with their run).
grant select on ops.run_events to service_role;
grant insert (run_id, level, message, payload) on ops.run_events to service_role;
grant execute on function
    ops.create_run(text, text, text, text, text, text, text, jsonb),
    ops.poll_run(text, bigint, integer),
    ops.cancel_run(text, text, text),
    ops.claim_next_run(text, text, text, text),
    ops.start_run(text, text),
    ops.heartbeat_run(text, text),
    ops.finish_run(text, text, text, integer, text),
    ops.append_events(text, jsonb),
    ops.add_artifact(text, text, text, text, bigint, jsonb),
    ops.recover_stalled_runs(integer, integer),
    ops.raise_error(text, text, text),
    ops.is_terminal(text),
    ops.utc_text(timestamptz),
    ops.allowed_transition(text, text),
    ops.base_run_id(text, timestamptz),
    ops.raise_run_not_found(text),
    ops.require_run(text),
    ops.existing_run_for_key(ops.runs, text, text, text, text),
    ops.not_held_by(ops.runs, text, text)
to service_role;

notify pgrst, 'reload schema';
