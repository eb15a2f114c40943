-- OdooOps run queue: every write is safe to repeat, and a superseded attempt cannot write.
--
-- Over an unreliable network a client cannot tell "not applied" from "applied, answer lost", so
-- it sends the same call again. Each write therefore carries a key the database uses to recognise
-- the repeat and answer it as it answered the first time (docs/RUN_LIFECYCLE.md, "Repeat keys"):
--   * create_run     idempotency_key (the run) + request_key (the invocation: created = this
--                    invocation created it, even when its first answer was lost);
--   * cancel_run     request_key (outcome 'cancelled' when this invocation cancelled it);
--   * claim_next_run claim_token (a repeat returns the run this token claimed);
--   * append_events  batch_key (a repeated batch is acknowledged with its first answer);
--   * add_artifact   artifact_key (a repeated registration returns the stored artifact);
--   * start_run_v2, heartbeat_run_v2, finish_run_v2: the run's state under (worker, attempt);
--     their answer says whether this call did it ('started') or it was already so.
-- Attempt fencing: a worker's writes name the attempt (ops.runs.attempt at its claim). Once the
-- run was requeued (claimed_by cleared) or claimed again (attempt moved on), they are refused with
-- SQLSTATE PT412 (HTTP 412), so a stale worker never writes into the new attempt.
--
-- Compatibility: the previous version's clients keep working. Functions that gained parameters
-- were dropped and re-created with the new parameters last and defaulted (one signature per name,
-- so PostgREST never sees two candidates: PGRST203); functions whose answer had to change got a
-- new name (_v2) and the old ones stay as they were.

set lock_timeout = '5s';
set statement_timeout = '120s';

-- ---------------------------------------------------------------------------------------------
-- Storage of the repeat keys
-- ---------------------------------------------------------------------------------------------

alter table ops.runs
    add column create_request_key text
        constraint runs_create_request_key_length check (length(create_request_key) between 1 and 255),
    add column cancel_request_key text
        constraint runs_cancel_request_key_length check (length(cancel_request_key) between 1 and 255);

comment on column ops.runs.create_request_key is
    'The request_key of the create_run call that queued the run (set by ops.create_run).';
comment on column ops.runs.cancel_request_key is
    'The request_key of the cancel_run call that cancelled the run (set by ops.cancel_run).';

-- One row per claim: a repeated claim_next_run with the same token finds its claim here.
create table ops.run_claims (
    claim_token text primary key
        constraint run_claims_token_length check (length(claim_token) between 1 and 255),
    run_id text not null references ops.runs (run_id) on delete cascade,
    worker_id text not null,
    attempt integer not null,
    claimed_at timestamptz not null default now()
);
create index run_claims_run_idx on ops.run_claims (run_id);

-- One row per appended batch that named a key: a repeat returns the batch's recorded last seq.
create table ops.event_batches (
    run_id text not null references ops.runs (run_id) on delete cascade,
    batch_key text not null
        constraint event_batches_key_length check (length(batch_key) between 1 and 255),
    attempt integer,
    event_count integer not null,
    last_seq bigint not null,
    created_at timestamptz not null default now(),
    primary key (run_id, batch_key)
);

alter table ops.artifacts
    add column artifact_key text
        constraint artifacts_artifact_key_length check (length(artifact_key) between 1 and 255),
    add column attempt integer;
-- Migrations run in one transaction, where CONCURRENTLY is not allowed; ops.artifacts holds a few
-- rows per run and only workers write it, for the moment the index takes to build.
-- squawk-ignore require-concurrent-index-creation
create unique index artifacts_run_key_idx on ops.artifacts (run_id, artifact_key) where artifact_key is not null;

-- ---------------------------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------------------------

-- Attempt fencing: refuse a write made for an attempt that is no longer the run's current one.
-- NULL (a client of the previous version) is not fenced.
create function ops.require_attempt(the_run ops.runs, attempt integer, wanted text)
returns void
language plpgsql
stable
set search_path = ''
as $$
begin
    if require_attempt.attempt is null then
        return;
    end if;
    if require_attempt.attempt <> the_run.attempt or the_run.claimed_by is null then
        perform ops.raise_error('PT412',
            format('run %s: attempt %s was superseded (the run is now %s at attempt %s), so its worker cannot %s',
                the_run.run_id, require_attempt.attempt, the_run.status, the_run.attempt, require_attempt.wanted),
            'The run was requeued after its lease expired, or claimed again: stop this attempt; '
                || 'the current attempt writes the run''s events, artifacts and result.');
    end if;
end;
$$;

-- The run row, locked against concurrent writers of the same run (FOR NO KEY UPDATE leaves
-- inserts of its events and artifacts free), or PT404.
create function ops.lock_run(run_id text)
returns ops.runs
language plpgsql
set search_path = ''
as $$
declare
    found_run ops.runs;
begin
    select * into found_run from ops.runs r where r.run_id = lock_run.run_id for no key update;
    if not found then
        perform ops.raise_run_not_found(lock_run.run_id);
    end if;
    return found_run;
end;
$$;

create function ops.require_key(name text, key text)
returns void
language plpgsql
immutable
set search_path = ''
as $$
begin
    if require_key.key is not null and length(require_key.key) not between 1 and 255 then
        perform ops.raise_error('PT400', format('%s must be 1 to 255 characters', require_key.name));
    end if;
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- create_run: + request_key
-- ---------------------------------------------------------------------------------------------

create function ops.answer_for_key(
    existing ops.runs, project_id text, env_id text, workflow_type text, git_sha text, request_key text
)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
    by_this_request boolean := answer_for_key.request_key is not null
        and existing.create_request_key is not distinct from answer_for_key.request_key;
begin
    -- Refuses a key reused for a different run (PT409).
    perform ops.existing_run_for_key(existing, answer_for_key.project_id, answer_for_key.env_id,
        answer_for_key.workflow_type, answer_for_key.git_sha);
    return jsonb_build_object('run', to_jsonb(existing), 'created', by_this_request,
        'outcome', case when by_this_request then 'queued' else 'existing' end);
end;
$$;

-- Replaced just below by a signature that accepts every call the old one did.
-- squawk-ignore ban-drop-function
drop function ops.create_run(text, text, text, text, text, text, text, jsonb);

create function ops.create_run(
    project_id text,
    workflow_type text,
    git_ref text,
    git_sha text,
    env_id text default 'dev',
    created_by text default null,
    idempotency_key text default null,
    metadata jsonb default '{}'::jsonb,
    request_key text default null
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
    perform ops.require_key('idempotency_key', create_run.idempotency_key);
    perform ops.require_key('request_key', create_run.request_key);

    if create_run.idempotency_key is not null then
        select * into new_run from ops.runs r where r.idempotency_key = create_run.idempotency_key;
        if found then
            return ops.answer_for_key(new_run, create_run.project_id, create_run.env_id,
                create_run.workflow_type, create_run.git_sha, create_run.request_key);
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
                              idempotency_key, create_request_key, metadata)
        values (
            case when suffix = 1 then base_id else base_id || '-' || suffix end,
            create_run.project_id, coalesce(create_run.env_id, 'dev'), create_run.workflow_type,
            create_run.git_sha, create_run.git_ref, create_run.created_by, create_run.idempotency_key,
            create_run.request_key,
            coalesce(create_run.metadata, '{}'::jsonb) || jsonb_strip_nulls(jsonb_build_object(
                'workflow_type', create_run.workflow_type, 'git_ref', create_run.git_ref,
                'created_by', create_run.created_by))
        )
        on conflict do nothing
        returning * into new_run;
        exit when found;
        -- Either the id is taken (another run of this commit in the same second) or a concurrent
        -- create with the same idempotency key won the race (its row is visible once committed).
        if create_run.idempotency_key is not null then
            select * into new_run from ops.runs r where r.idempotency_key = create_run.idempotency_key;
            if found then
                return ops.answer_for_key(new_run, create_run.project_id, create_run.env_id,
                    create_run.workflow_type, create_run.git_sha, create_run.request_key);
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
    return jsonb_build_object('run', to_jsonb(new_run), 'created', true, 'outcome', 'queued');
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- cancel_run: + request_key
-- ---------------------------------------------------------------------------------------------

-- Replaced just below by a signature that accepts every call the old one did.
-- squawk-ignore ban-drop-function
drop function ops.cancel_run(text, text, text);

create function ops.cancel_run(
    run_id text, reason text default null, cancelled_by text default null, request_key text default null
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    the_run ops.runs;
begin
    perform ops.require_key('request_key', cancel_run.request_key);
    select * into the_run from ops.runs r where r.run_id = cancel_run.run_id for update;
    if not found then
        perform ops.raise_run_not_found(cancel_run.run_id);
    end if;
    if the_run.status = 'cancelled' then
        -- A repeat of the call that cancelled it (its first answer was lost) reads 'cancelled'.
        return jsonb_build_object('run', to_jsonb(the_run), 'outcome',
            case when cancel_run.request_key is not null
                      and the_run.cancel_request_key is not distinct from cancel_run.request_key
                 then 'cancelled' else 'already_cancelled' end);
    end if;
    if the_run.status in ('success', 'failed') then
        perform ops.raise_error('PT409',
            format('run %s already finished as %s at %s; a finished run cannot be cancelled',
                the_run.run_id, the_run.status, ops.utc_text(the_run.finished_at)),
            'Nothing is left to stop; queue a new run to run it again.');
    end if;
    update ops.runs r
       set status = 'cancelled',
           cancel_request_key = cancel_run.request_key,
           status_reason = 'by ' || coalesce(nullif(cancel_run.cancelled_by, ''), current_user::text)
               || coalesce(' (' || nullif(cancel_run.reason, '') || ')', '')
     where r.run_id = cancel_run.run_id
    returning * into the_run;
    return jsonb_build_object('run', to_jsonb(the_run), 'outcome', 'cancelled');
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- claim_next_run: + claim_token
-- ---------------------------------------------------------------------------------------------

-- Replaced just below by a signature that accepts every call the old one did.
-- squawk-ignore ban-drop-function
drop function ops.claim_next_run(text, text, text, text);

create function ops.claim_next_run(
    worker_id text,
    project_id text default null,
    env_id text default null,
    workflow_type text default null,
    claim_token text default null
)
returns setof ops.runs
language plpgsql
set search_path = ''
as $$
declare
    earlier ops.run_claims;
    claimed ops.runs;
begin
    if claim_next_run.worker_id is null or length(claim_next_run.worker_id) not between 1 and 200 then
        perform ops.raise_error('PT400', 'worker_id must be a non-empty string of at most 200 characters');
    end if;
    perform ops.require_key('claim_token', claim_next_run.claim_token);
    if claim_next_run.claim_token is not null then
        -- A repeat waits for the first call with this token to commit, then finds its claim.
        perform pg_advisory_xact_lock(hashtextextended('ops.claim_next_run:' || claim_next_run.claim_token, 0));
        select * into earlier from ops.run_claims c where c.claim_token = claim_next_run.claim_token;
        if found then
            if earlier.worker_id <> claim_next_run.worker_id then
                perform ops.raise_error('PT409',
                    format('claim token %s belongs to worker %s, not %s',
                        quote_literal(claim_next_run.claim_token), earlier.worker_id, claim_next_run.worker_id),
                    'Use a new claim token for every claim.');
            end if;
            -- The run this token claimed, while that claim still holds it; nothing once it lapsed
            -- (requeued, or claimed again: the worker must not act for a later attempt).
            return query
            select r.* from ops.runs r
             where r.run_id = earlier.run_id and r.attempt = earlier.attempt
               and r.claimed_by = earlier.worker_id;
            return;
        end if;
    end if;
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
    returning r.* into claimed;
    if claimed.run_id is null then
        return;
    end if;
    if claim_next_run.claim_token is not null then
        insert into ops.run_claims (claim_token, run_id, worker_id, attempt)
        values (claim_next_run.claim_token, claimed.run_id, claimed.claimed_by, claimed.attempt);
    end if;
    return next claimed;
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- start / heartbeat / finish, fenced by attempt, answering what this call did (new names: their
-- answer is {run, outcome}; the previous version's start_run/heartbeat_run/finish_run stay)
-- ---------------------------------------------------------------------------------------------

create function ops.start_run_v2(run_id text, worker_id text, attempt integer default null)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    the_run ops.runs := ops.lock_run(start_run_v2.run_id);
begin
    perform ops.require_attempt(the_run, start_run_v2.attempt, 'start it');
    if the_run.status = 'claimed' and the_run.claimed_by = start_run_v2.worker_id then
        update ops.runs r set status = 'running' where r.run_id = start_run_v2.run_id returning * into the_run;
        return jsonb_build_object('run', to_jsonb(the_run), 'outcome', 'started');
    end if;
    if the_run.status = 'running' and the_run.claimed_by = start_run_v2.worker_id then
        return jsonb_build_object('run', to_jsonb(the_run), 'outcome', 'already_started');
    end if;
    perform ops.not_held_by(the_run, start_run_v2.worker_id, 'start');
    return null;
end;
$$;

create function ops.heartbeat_run_v2(run_id text, worker_id text, attempt integer default null)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    the_run ops.runs := ops.lock_run(heartbeat_run_v2.run_id);
begin
    perform ops.require_attempt(the_run, heartbeat_run_v2.attempt, 'heartbeat it');
    if the_run.status in ('claimed', 'running') and the_run.claimed_by = heartbeat_run_v2.worker_id then
        update ops.runs r set heartbeat_at = now() where r.run_id = heartbeat_run_v2.run_id
        returning * into the_run;
        return jsonb_build_object('run', to_jsonb(the_run), 'outcome', 'refreshed');
    end if;
    -- Finished, cancelled, or (without an attempt) no longer this worker's: the status tells.
    return jsonb_build_object('run', to_jsonb(the_run), 'outcome', 'not_held');
end;
$$;

create function ops.finish_run_v2(
    run_id text,
    worker_id text,
    status text,
    exit_code integer default null,
    reason text default null,
    attempt integer default null
)
returns jsonb
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
    the_run ops.runs;
begin
    if finish_run_v2.status is null or finish_run_v2.status not in ('success', 'failed') then
        perform ops.raise_error('PT400',
            format('status must be success or failed, got %s', coalesce(quote_literal(finish_run_v2.status), 'null')));
    end if;
    the_run := ops.lock_run(finish_run_v2.run_id);
    perform ops.require_attempt(the_run, finish_run_v2.attempt, 'finish it');
    if the_run.claimed_by = finish_run_v2.worker_id
       and (the_run.status = 'running' or (the_run.status = 'claimed' and finish_run_v2.status = 'failed')) then
        update ops.runs r
           set status = finish_run_v2.status, exit_code = finish_run_v2.exit_code, status_reason = finish_run_v2.reason
         where r.run_id = finish_run_v2.run_id
        returning * into the_run;
        return jsonb_build_object('run', to_jsonb(the_run), 'outcome', 'finished');
    end if;
    if the_run.status = finish_run_v2.status and the_run.claimed_by = finish_run_v2.worker_id then
        return jsonb_build_object('run', to_jsonb(the_run), 'outcome', 'already_finished');
    end if;
    perform ops.not_held_by(the_run, finish_run_v2.worker_id, 'finish');
    return null;
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- append_events: + attempt, batch_key
-- ---------------------------------------------------------------------------------------------

-- Replaced just below by a signature that accepts every call the old one did.
-- squawk-ignore ban-drop-function
drop function ops.append_events(text, jsonb);

-- SECURITY DEFINER: it moves the event counter and writes seq, which service_role cannot.
create function ops.append_events(
    run_id text, events jsonb, attempt integer default null, batch_key text default null
)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
    event_count integer;
    last_seq bigint;
    the_run ops.runs;
    earlier ops.event_batches;
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
    perform ops.require_key('batch_key', append_events.batch_key);
    -- The row lock orders this call after any concurrent one with the same key, which has then
    -- committed its batch (visible to the next statement).
    the_run := ops.lock_run(append_events.run_id);
    if append_events.batch_key is not null then
        select * into earlier from ops.event_batches b
         where b.run_id = append_events.run_id and b.batch_key = append_events.batch_key;
        if found then
            if earlier.event_count <> event_count then
                perform ops.raise_error('PT409',
                    format('run %s: batch key %s was already used for a batch of %s events, not %s',
                        append_events.run_id, quote_literal(append_events.batch_key), earlier.event_count,
                        event_count),
                    'Use a new batch key for every new batch.');
            end if;
            return earlier.last_seq;  -- a repeat: acknowledged, not stored again
        end if;
    end if;
    perform ops.require_attempt(the_run, append_events.attempt, 'append its events');
    update ops.runs r set event_seq = r.event_seq + event_count where r.run_id = append_events.run_id
    returning r.event_seq into last_seq;
    insert into ops.run_events (run_id, seq, level, message, payload)
    select append_events.run_id, last_seq - event_count + e.ordinality,
           coalesce(e.v ->> 'level', 'info'), e.v ->> 'message', coalesce(e.v -> 'payload', '{}'::jsonb)
      from jsonb_array_elements(append_events.events) with ordinality as e(v, ordinality);
    if append_events.batch_key is not null then
        insert into ops.event_batches (run_id, batch_key, attempt, event_count, last_seq)
        values (append_events.run_id, append_events.batch_key, append_events.attempt, event_count, last_seq);
    end if;
    return last_seq;
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- add_artifact: + attempt, artifact_key
-- ---------------------------------------------------------------------------------------------

-- Replaced just below by a signature that accepts every call the old one did.
-- squawk-ignore ban-drop-function
drop function ops.add_artifact(text, text, text, text, bigint, jsonb);

create function ops.add_artifact(
    run_id text,
    artifact_type text,
    storage_path text,
    digest text default null,
    size_bytes bigint default null,
    metadata jsonb default '{}'::jsonb,
    attempt integer default null,
    artifact_key text default null
)
returns ops.artifacts
language plpgsql
set search_path = ''
as $$
declare
    the_run ops.runs;
    artifact ops.artifacts;
begin
    if add_artifact.artifact_type is null
       or add_artifact.artifact_type not in ('image', 'sbom', 'logs', 'evidence', 'manifest') then
        perform ops.raise_error('PT400',
            format('artifact_type must be one of image, sbom, logs, evidence, manifest, got %s',
                coalesce(quote_literal(add_artifact.artifact_type), 'null')));
    end if;
    if add_artifact.digest is not null and add_artifact.digest !~ '^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$' then
        perform ops.raise_error('PT400', 'digest must look like sha256:<64 hex> or sha512:<128 hex>');
    end if;
    perform ops.require_key('artifact_key', add_artifact.artifact_key);
    the_run := ops.lock_run(add_artifact.run_id);
    if add_artifact.artifact_key is not null then
        select * into artifact from ops.artifacts a
         where a.run_id = add_artifact.run_id and a.artifact_key = add_artifact.artifact_key;
        if found then
            if (artifact.artifact_type, artifact.storage_path, artifact.digest, artifact.size_bytes, artifact.metadata)
               is distinct from
               (add_artifact.artifact_type, add_artifact.storage_path, add_artifact.digest, add_artifact.size_bytes,
                coalesce(add_artifact.metadata, '{}'::jsonb)) then
                perform ops.raise_error('PT409',
                    format('run %s: artifact key %s was already used for artifact %s (%s %s)',
                        add_artifact.run_id, quote_literal(add_artifact.artifact_key), artifact.artifact_id,
                        artifact.artifact_type, artifact.storage_path),
                    'Use a new artifact key for every new artifact.');
            end if;
            return artifact;  -- a repeat: the artifact registered the first time
        end if;
    end if;
    perform ops.require_attempt(the_run, add_artifact.attempt, 'register its artifacts');
    insert into ops.artifacts (run_id, artifact_type, storage_path, digest, size_bytes, metadata,
                               artifact_key, attempt)
    values (add_artifact.run_id, add_artifact.artifact_type, add_artifact.storage_path, add_artifact.digest,
            add_artifact.size_bytes, coalesce(add_artifact.metadata, '{}'::jsonb), add_artifact.artifact_key,
            add_artifact.attempt)
    returning * into artifact;
    return artifact;
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- Security: the same least privilege as before for the new tables and functions
-- ---------------------------------------------------------------------------------------------

alter table ops.run_claims enable row level security;
alter table ops.event_batches enable row level security;

revoke all on ops.run_claims, ops.event_batches from public, anon, authenticated;
-- claim_next_run runs as its caller and records the claim; append_events (definer) owns batches.
grant select, insert on ops.run_claims to service_role;
grant select on ops.event_batches to service_role;
-- cancel_run runs as its caller (status_reason names current_user) and records its request key;
-- create_request_key is written on insert only (no update grant).
grant update (cancel_request_key) on ops.runs to service_role;

revoke all on function
    ops.require_attempt(ops.runs, integer, text),
    ops.lock_run(text),
    ops.require_key(text, text),
    ops.answer_for_key(ops.runs, text, text, text, text, text),
    ops.create_run(text, text, text, text, text, text, text, jsonb, text),
    ops.cancel_run(text, text, text, text),
    ops.claim_next_run(text, text, text, text, text),
    ops.start_run_v2(text, text, integer),
    ops.heartbeat_run_v2(text, text, integer),
    ops.finish_run_v2(text, text, text, integer, text, integer),
    ops.append_events(text, jsonb, integer, text),
    ops.add_artifact(text, text, text, text, bigint, jsonb, integer, text)
from public, anon, authenticated;

grant execute on function
    ops.require_attempt(ops.runs, integer, text),
    ops.lock_run(text),
    ops.require_key(text, text),
    ops.answer_for_key(ops.runs, text, text, text, text, text),
    ops.create_run(text, text, text, text, text, text, text, jsonb, text),
    ops.cancel_run(text, text, text, text),
    ops.claim_next_run(text, text, text, text, text),
    ops.start_run_v2(text, text, integer),
    ops.heartbeat_run_v2(text, text, integer),
    ops.finish_run_v2(text, text, text, integer, text, integer),
    ops.append_events(text, jsonb, integer, text),
    ops.add_artifact(text, text, text, text, bigint, jsonb, integer, text)
to service_role;

notify pgrst, 'reload schema';
