-- OdooOps run queue: what operators need to see and act on the queue without SQL
-- (odooops list | status | logs | retry | workers | doctor | selftest).
--
--   * ops.workers: a registry every worker keeps current, idle or busy (ops.worker_beat), so that
--     an idle fleet is visible and a queue nobody can claim is noticed;
--   * one read function per operator command, each answering from an index however long the
--     history grows (ops.list_runs, ops.run_status, ops.list_workers), plus ops.retry_run;
--   * ops.schema_version and ops.doctor_report, which odooops doctor reads;
--   * ops.create_project / ops.create_environment (register a project without table writes) and
--     ops.delete_selftest_project, which removes only what odooops selftest created.
--
-- Every function answers with the database's clock (`now`) so that clients show relative times
-- ("3 min ago") without trusting their own clock. They are SECURITY DEFINER with an empty
-- search_path: they do exactly what they say whoever calls them, including the core helpers they
-- use (ops.require_run, ops.raise_error, ...) whatever those helpers' grants; only service_role
-- may execute them (see Security at the end).

set lock_timeout = '5s';
set statement_timeout = '120s';

-- ---------------------------------------------------------------------------------------------
-- Worker registry
-- ---------------------------------------------------------------------------------------------

create table ops.workers (
    worker_id text primary key
        constraint workers_worker_id_length check (length(worker_id) between 1 and 200),
    host text constraint workers_host_length check (length(host) <= 255),
    pid integer,
    version text constraint workers_version_length check (length(version) <= 64),
    -- What the worker may claim: {"project_id": ..., "env_id": ..., "workflow_type": ...}, each
    -- key present only when the worker filters on it.
    filters jsonb not null default '{}'::jsonb
        constraint workers_filters_object check (jsonb_typeof(filters) = 'object'),
    state text not null default 'idle'
        constraint workers_state_valid check (state in ('idle', 'busy', 'stopping', 'stopped')),
    current_run_id text,
    started_at timestamptz not null default now(),
    last_seen_at timestamptz not null default now()
);

comment on table ops.workers is
    'Workers of the run queue, kept current by ops.worker_beat (also while idle); read with ops.list_workers.';

alter table ops.workers enable row level security;

-- ---------------------------------------------------------------------------------------------
-- Indexes for the operator reads. `odooops list` pages newest first, optionally filtered; each
-- filter has an index in that order, so a page over millions of finished runs reads a page of rows.
-- ---------------------------------------------------------------------------------------------

-- Applied in the migration's transaction: CONCURRENTLY is not possible there. Building them on a
-- history of a million runs holds writes to ops.runs for a few seconds (see BENCHMARKS.md).
-- squawk-ignore require-concurrent-index-creation
create index runs_recent_idx on ops.runs (queued_at desc, run_id desc);
-- squawk-ignore require-concurrent-index-creation
create index runs_status_recent_idx on ops.runs (status, queued_at desc, run_id desc);
-- squawk-ignore require-concurrent-index-creation
create index runs_env_recent_idx on ops.runs (project_id, env_id, queued_at desc, run_id desc);
-- squawk-ignore require-concurrent-index-creation
create index runs_workflow_recent_idx on ops.runs (workflow_type, queued_at desc, run_id desc);
-- A run's timeline (its status changes) without reading all of its log.
-- squawk-ignore require-concurrent-index-creation
create index run_events_status_idx on ops.run_events (run_id, seq) where (payload ->> 'kind') = 'status';

-- ---------------------------------------------------------------------------------------------
-- A run's id and its queue time agree
-- ---------------------------------------------------------------------------------------------

-- ops.create_run takes the id's second from clock_timestamp() while queued_at defaulted to now()
-- (the transaction's start): across a second boundary the id said 22:01:19 and queued_at
-- 22:01:18.998. The insert trigger now puts queued_at in the id's second when the two are that
-- tick apart (the first or last instant of the id's second: a shift of under a second); a run
-- inserted without an id gets one from now(), the same instant as its queued_at. Same body
-- otherwise.
create or replace function ops.tg_runs_before_insert()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
    id_second timestamptz;
begin
    if new.status is distinct from 'queued' then
        perform ops.raise_error('PT409',
            format('a run is created in status queued, not %s', new.status),
            'Insert the run as queued; workers move it on with ops.claim_next_run.');
    end if;
    if new.run_id is null then
        new.run_id := ops.base_run_id(new.git_sha, now());
    end if;
    -- queued_at arrives filled (its column default is now()): align it when it is off by the
    -- second that ticked over between now() and the id's clock_timestamp(), not otherwise.
    new.queued_at := coalesce(new.queued_at, now());
    if new.run_id ~ '^run-[0-9]{8}-[0-9]{6}-' then
        id_second := (to_timestamp(substr(new.run_id, 5, 15), 'YYYYMMDD-HH24MISS')::timestamp) at time zone 'UTC';
        if date_trunc('second', new.queued_at) <> id_second
           and new.queued_at between id_second - interval '1 second' and id_second + interval '2 seconds' then
            new.queued_at := least(greatest(new.queued_at, id_second), id_second + interval '999999 microseconds');
        end if;
    end if;
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

-- ---------------------------------------------------------------------------------------------
-- Selftest runs are reserved for the selftest
-- ---------------------------------------------------------------------------------------------

-- `odooops selftest` plays the worker itself against a live deployment, where real workers claim
-- every queued run they may. A run whose metadata names `selftest_worker` can only be claimed by
-- that worker id: for anyone else the claim's UPDATE skips the row (the trigger returns NULL), so
-- their claim returns nothing and their command never runs the selftest's run.
create function ops.tg_runs_selftest_reserved()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    if old.status = 'queued' and new.status = 'claimed' and old.metadata ? 'selftest_worker'
       and new.claimed_by is distinct from old.metadata ->> 'selftest_worker' then
        return null;
    end if;
    return new;
end;
$$;

create trigger runs_selftest_reserved before update of status on ops.runs
    for each row when (old.status = 'queued' and new.status = 'claimed')
    execute function ops.tg_runs_selftest_reserved();

-- ---------------------------------------------------------------------------------------------
-- Version
-- ---------------------------------------------------------------------------------------------

-- The newest migration applied: the Supabase CLI (and the devstack) record each applied file in
-- supabase_migrations.schema_migrations; a database migrated by hand with psql has no such record
-- and reports this file's version, the oldest one that has this function.
-- SECURITY DEFINER: API roles have no privilege on supabase_migrations.
create function ops.schema_version()
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
    recorded text;
begin
    if to_regclass('supabase_migrations.schema_migrations') is not null then
        execute 'select max(version) from supabase_migrations.schema_migrations' into recorded;
    end if;
    return jsonb_build_object(
        'version', coalesce(recorded, '20261202020000'),
        'source', case when recorded is null then 'ops.schema_version' else 'supabase_migrations' end,
        'now', now()
    );
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- Projects and environments
-- ---------------------------------------------------------------------------------------------

create function ops.create_project(
    project_id text, name text default null, repository text default null, metadata jsonb default '{}'::jsonb
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
    created ops.projects;
begin
    if create_project.metadata is not null and jsonb_typeof(create_project.metadata) <> 'object' then
        perform ops.raise_error('PT400', 'metadata must be a JSON object');
    end if;
    insert into ops.projects (project_id, name, repository, metadata)
    values (create_project.project_id, create_project.name, create_project.repository,
            coalesce(create_project.metadata, '{}'::jsonb))
    on conflict do nothing
    returning * into created;
    if not found then
        perform ops.raise_error('PT409', format('project %s already exists', create_project.project_id),
            'Choose another project id; an existing project is never changed by ops.create_project.');
    end if;
    return to_jsonb(created);
end;
$$;

create function ops.create_environment(
    project_id text, env_id text, name text default null, metadata jsonb default '{}'::jsonb
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
    created ops.environments;
begin
    perform 1 from ops.projects p where p.project_id = create_environment.project_id;
    if not found then
        perform ops.raise_error('PT404', format('project %s not found in ops.projects', create_environment.project_id),
            'Register the project first (ops.create_project).');
    end if;
    if create_environment.metadata is not null and jsonb_typeof(create_environment.metadata) <> 'object' then
        perform ops.raise_error('PT400', 'metadata must be a JSON object');
    end if;
    insert into ops.environments (project_id, env_id, name, metadata)
    values (create_environment.project_id, create_environment.env_id, create_environment.name,
            coalesce(create_environment.metadata, '{}'::jsonb))
    on conflict do nothing
    returning * into created;
    if not found then
        perform ops.raise_error('PT409',
            format('environment %s of project %s already exists', create_environment.env_id,
                create_environment.project_id),
            'Choose another environment id.');
    end if;
    return to_jsonb(created);
end;
$$;

-- Removes a project created by `odooops selftest` (metadata.created_by = 'odooops selftest' and
-- the selftest's own nonce) with everything in it; refuses any other project.
create function ops.delete_selftest_project(project_id text, nonce text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
    found_project ops.projects;
    run_count bigint;
begin
    select * into found_project from ops.projects p where p.project_id = delete_selftest_project.project_id
       for update;
    if not found then
        return jsonb_build_object('deleted', false, 'runs', 0);
    end if;
    if found_project.metadata ->> 'created_by' is distinct from 'odooops selftest'
       or found_project.metadata ->> 'selftest_nonce' is distinct from delete_selftest_project.nonce then
        perform ops.raise_error('PT409',
            format('project %s was not created by this odooops selftest; it is left alone',
                delete_selftest_project.project_id),
            'Only the selftest that created a project (with its nonce) can remove it.');
    end if;
    select count(*) into run_count from ops.runs r where r.project_id = delete_selftest_project.project_id;
    delete from ops.projects p where p.project_id = delete_selftest_project.project_id;
    return jsonb_build_object('deleted', true, 'runs', run_count);
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- Workers
-- ---------------------------------------------------------------------------------------------

-- Called by every worker at start, on each state change and every few seconds while idle or busy.
-- SECURITY DEFINER: ops.workers is read-only for the API roles; this is its only writer.
create function ops.worker_beat(
    worker_id text,
    state text default 'idle',
    current_run_id text default null,
    host text default null,
    pid integer default null,
    version text default null,
    filters jsonb default '{}'::jsonb
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
    beat ops.workers;
begin
    if worker_beat.worker_id is null or length(worker_beat.worker_id) not between 1 and 200 then
        perform ops.raise_error('PT400', 'worker_id must be a non-empty string of at most 200 characters');
    end if;
    if worker_beat.state is null or worker_beat.state not in ('idle', 'busy', 'stopping', 'stopped') then
        perform ops.raise_error('PT400',
            format('state must be one of idle, busy, stopping, stopped, got %s',
                coalesce(quote_literal(worker_beat.state), 'null')));
    end if;
    if worker_beat.filters is not null and jsonb_typeof(worker_beat.filters) <> 'object' then
        perform ops.raise_error('PT400', 'filters must be a JSON object');
    end if;
    insert into ops.workers as w (worker_id, host, pid, version, filters, state, current_run_id)
    values (worker_beat.worker_id, left(worker_beat.host, 255), worker_beat.pid, left(worker_beat.version, 64),
            jsonb_strip_nulls(coalesce(worker_beat.filters, '{}'::jsonb)), worker_beat.state,
            worker_beat.current_run_id)
    on conflict on constraint workers_pkey do update
       set host = coalesce(excluded.host, w.host),
           pid = coalesce(excluded.pid, w.pid),
           version = coalesce(excluded.version, w.version),
           filters = excluded.filters,
           state = excluded.state,
           current_run_id = excluded.current_run_id,
           -- A stopped worker that beats again has restarted under the same name.
           started_at = case when w.state = 'stopped' then now() else w.started_at end,
           last_seen_at = now()
    returning * into beat;
    return to_jsonb(beat);
end;
$$;

-- Workers seen within `seen_within_seconds`, most recently seen first, with the database's clock.
create function ops.list_workers(seen_within_seconds integer default 86400)
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
    select jsonb_build_object(
        'now', now(),
        'workers', coalesce((
            select jsonb_agg(to_jsonb(w) order by w.last_seen_at desc, w.worker_id)
              from ops.workers w
             where w.last_seen_at >= now() - make_interval(secs => greatest(coalesce(list_workers.seen_within_seconds, 86400), 1))
        ), '[]'::jsonb)
    )
$$;

-- ---------------------------------------------------------------------------------------------
-- Runs: list, status, retry
-- ---------------------------------------------------------------------------------------------

-- Newest first; every filter optional (`since_seconds`: queued within that many seconds).
-- `before_run_id` pages on: the runs queued before that run.
-- Built as dynamic SQL so that each call is planned for the filters it has (one index per filter).
create function ops.list_runs(
    project_id text default null,
    env_id text default null,
    status text default null,
    workflow_type text default null,
    since_seconds double precision default null,
    before_run_id text default null,
    max_runs integer default 20
)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
    page_size integer := least(greatest(coalesce(list_runs.max_runs, 20), 1), 1000);
    anchor ops.runs;
    predicates text[] := array['true'];
    found_runs jsonb;
begin
    if list_runs.status is not null
       and list_runs.status not in ('queued', 'claimed', 'running', 'success', 'failed', 'cancelled') then
        perform ops.raise_error('PT400',
            format('status must be one of queued, claimed, running, success, failed, cancelled, got %s',
                quote_literal(list_runs.status)));
    end if;
    if list_runs.workflow_type is not null and list_runs.workflow_type not in ('build', 'deploy', 'test') then
        perform ops.raise_error('PT400',
            format('workflow_type must be one of build, deploy, test, got %s', quote_literal(list_runs.workflow_type)));
    end if;
    if list_runs.before_run_id is not null then
        anchor := ops.require_run(list_runs.before_run_id);
        predicates := predicates || '(r.queued_at, r.run_id) < ($6, $7)'::text;
    end if;
    if list_runs.project_id is not null then
        predicates := predicates || 'r.project_id = $1'::text;
    end if;
    if list_runs.env_id is not null then
        predicates := predicates || 'r.env_id = $2'::text;
    end if;
    if list_runs.status is not null then
        predicates := predicates || 'r.status = $3'::text;
    end if;
    if list_runs.workflow_type is not null then
        predicates := predicates || 'r.workflow_type = $4'::text;
    end if;
    if list_runs.since_seconds is not null then
        -- "within the last N seconds" by the database's clock, not the client's.
        predicates := predicates || 'r.queued_at >= now() - make_interval(secs => $5)'::text;
    end if;
    execute format(
        'select coalesce(jsonb_agg(to_jsonb(page) - ''metadata'' order by page.queued_at desc, page.run_id desc), ''[]''::jsonb)
           from (select * from ops.runs r where %s
                  order by r.queued_at desc, r.run_id desc limit %s) page',
        array_to_string(predicates, ' and '), page_size + 1)
      into found_runs
      using list_runs.project_id, list_runs.env_id, list_runs.status, list_runs.workflow_type,
            list_runs.since_seconds, anchor.queued_at, anchor.run_id;
    return jsonb_build_object(
        'now', now(),
        'runs', coalesce((select jsonb_agg(e.v order by e.i) from jsonb_array_elements(found_runs)
                           with ordinality e(v, i) where e.i <= page_size), '[]'::jsonb),
        'has_more', jsonb_array_length(found_runs) > page_size
    );
end;
$$;

-- One run for `odooops status`: the run, its artifacts, its timeline (the status changes) and
-- its last `last_events` events, in order.
create function ops.run_status(run_id text, last_events integer default 10)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
    the_run ops.runs := ops.require_run(run_status.run_id);
    tail integer := least(greatest(coalesce(run_status.last_events, 10), 0), 1000);
begin
    return jsonb_build_object(
        'now', now(),
        'run', to_jsonb(the_run),
        'artifacts', (select coalesce(jsonb_agg(to_jsonb(a) order by a.created_at, a.artifact_id), '[]'::jsonb)
                        from ops.artifacts a where a.run_id = run_status.run_id),
        'timeline', (select coalesce(jsonb_agg(to_jsonb(e) order by e.seq), '[]'::jsonb)
                       from ops.run_events e
                      where e.run_id = run_status.run_id and (e.payload ->> 'kind') = 'status'),
        'events', (select coalesce(jsonb_agg(to_jsonb(t) order by t.seq), '[]'::jsonb)
                     from (select * from ops.run_events e
                            where e.run_id = run_status.run_id and e.seq > the_run.event_seq - tail
                            order by e.seq) t)
    );
end;
$$;

-- A new run with the original's project, environment, workflow type, ref, commit and metadata,
-- linked to it by metadata.retry_of. Only a finished run can be retried. The repeat keys are
-- ops.create_run's: idempotency_key finds the retry again, request_key tells whether this call
-- created it.
create function ops.retry_run(
    run_id text, created_by text default null, idempotency_key text default null, request_key text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
    original ops.runs := ops.require_run(retry_run.run_id);
    created jsonb;
begin
    if not ops.is_terminal(original.status) then
        perform ops.raise_error('PT409',
            format('run %s is %s: only a finished run can be retried', original.run_id, original.status),
            format('Wait for it to finish, or cancel it first (odooops destroy %s).', original.run_id));
    end if;
    created := ops.create_run(
        project_id => original.project_id,
        workflow_type => original.workflow_type,
        git_ref => original.git_ref,
        git_sha => original.git_sha,
        env_id => original.env_id,
        created_by => coalesce(retry_run.created_by, original.created_by),
        idempotency_key => retry_run.idempotency_key,
        request_key => retry_run.request_key,
        metadata => (original.metadata - 'workflow_type' - 'git_ref' - 'created_by')
            || jsonb_build_object('retry_of', original.run_id)
    );
    return created || jsonb_build_object('retry_of', original.run_id);
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- Diagnosis (odooops doctor)
-- ---------------------------------------------------------------------------------------------

-- The functions a client of this version calls: doctor checks that they exist once each and that
-- service_role may execute them.
create function ops.operation_names()
returns text[]
language sql
immutable
set search_path = ''
as $$
    select array['create_run', 'poll_run', 'poll_run_delta', 'cancel_run', 'claim_next_run',
                 'start_run_v2', 'heartbeat_run_v2', 'finish_run_v2', 'append_events', 'add_artifact',
                 'recover_stalled_runs', 'schema_version', 'create_project', 'create_environment',
                 'delete_selftest_project', 'worker_beat', 'list_workers', 'list_runs', 'run_status',
                 'retry_run', 'doctor_report']
$$;

-- Everything `odooops doctor` judges, in one answer: the schema's version, overloaded ops
-- functions (PostgREST answers PGRST203 for them), grants that differ from the documented ones,
-- workers, queued runs per project/environment/workflow type with whether a live worker may
-- claim them, and runs whose heartbeat is older than the lease.
create function ops.doctor_report(lease_seconds integer default 60, live_within_seconds integer default 120)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
    lease interval := make_interval(secs => greatest(coalesce(doctor_report.lease_seconds, 60), 1));
    live interval := make_interval(secs => greatest(coalesce(doctor_report.live_within_seconds, 120), 1));
begin
    return jsonb_build_object(
        'now', now(),
        'version', ops.schema_version() -> 'version',
        'overloaded', (
            select coalesce(jsonb_agg(jsonb_build_object('function', o.name, 'signatures', o.signatures)
                                      order by o.name), '[]'::jsonb)
              from (select p.proname as name,
                           jsonb_agg(p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'
                                     order by p.oid) as signatures
                      from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                     where n.nspname = 'ops'
                     group by p.proname having count(*) > 1) o),
        'missing_operations', (
            select coalesce(jsonb_agg(op order by op), '[]'::jsonb)
              from unnest(ops.operation_names()) op
             where not exists (select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                                where n.nspname = 'ops' and p.proname = op)),
        'grant_problems', (
            select coalesce(jsonb_agg(g.problem order by g.problem), '[]'::jsonb) from (
                select format('%s has %s on table ops.%s', r.role, pr.privilege, c.relname) as problem
                  from pg_class c join pg_namespace n on n.oid = c.relnamespace
                 cross join (values ('anon'), ('authenticated')) r(role)
                 cross join (values ('SELECT'), ('INSERT'), ('UPDATE'), ('DELETE')) pr(privilege)
                 where n.nspname = 'ops' and c.relkind = 'r'
                   and exists (select 1 from pg_roles where rolname = r.role)
                   and has_table_privilege(r.role, c.oid, pr.privilege)
                union all
                select format('row level security is off on table ops.%s', c.relname)
                  from pg_class c join pg_namespace n on n.oid = c.relnamespace
                 where n.nspname = 'ops' and c.relkind = 'r' and not c.relrowsecurity
                union all
                select format('service_role cannot execute ops.%s(%s)', p.proname,
                              pg_get_function_identity_arguments(p.oid))
                  from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                 where n.nspname = 'ops' and p.proname = any(ops.operation_names())
                   and exists (select 1 from pg_roles where rolname = 'service_role')
                   and not has_function_privilege('service_role', p.oid, 'EXECUTE')
            ) g),
        'workers', (
            select coalesce(jsonb_agg(to_jsonb(w) || jsonb_build_object('live', w.last_seen_at >= now() - live
                                                                         and w.state <> 'stopped')
                                      order by w.last_seen_at desc), '[]'::jsonb)
              from ops.workers w where w.last_seen_at >= now() - interval '1 day'),
        'queue', (
            select coalesce(jsonb_agg(jsonb_build_object(
                       'project_id', q.project_id, 'env_id', q.env_id, 'workflow_type', q.workflow_type,
                       'queued', q.queued, 'oldest_queued_at', q.oldest,
                       'live_workers', (select count(*) from ops.workers w
                                         where w.last_seen_at >= now() - live and w.state <> 'stopped'
                                           and coalesce(w.filters ->> 'project_id', q.project_id) = q.project_id
                                           and coalesce(w.filters ->> 'env_id', q.env_id) = q.env_id
                                           and coalesce(w.filters ->> 'workflow_type', q.workflow_type) = q.workflow_type))
                   order by q.oldest), '[]'::jsonb)
              from (select r.project_id, r.env_id, r.workflow_type, count(*) as queued, min(r.queued_at) as oldest
                      from ops.runs r where r.status = 'queued'
                     group by r.project_id, r.env_id, r.workflow_type) q),
        'stalled', (
            select coalesce(jsonb_agg(jsonb_build_object(
                       'run_id', r.run_id, 'status', r.status, 'claimed_by', r.claimed_by,
                       'heartbeat_at', r.heartbeat_at, 'attempt', r.attempt) order by r.heartbeat_at), '[]'::jsonb)
              from ops.runs r
             where r.status in ('claimed', 'running') and r.heartbeat_at < now() - lease)
    );
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- Security: the same model as the core schema (service_role only; anon/authenticated nothing)
-- ---------------------------------------------------------------------------------------------

revoke all on ops.workers from public, anon, authenticated;
grant select on ops.workers to service_role;

revoke all on function
    ops.schema_version(),
    ops.create_project(text, text, text, jsonb),
    ops.create_environment(text, text, text, jsonb),
    ops.delete_selftest_project(text, text),
    ops.worker_beat(text, text, text, text, integer, text, jsonb),
    ops.list_workers(integer),
    ops.list_runs(text, text, text, text, double precision, text, integer),
    ops.run_status(text, integer),
    ops.retry_run(text, text, text, text),
    ops.operation_names(),
    ops.doctor_report(integer, integer),
    ops.tg_runs_selftest_reserved()
from public, anon, authenticated;

grant execute on function
    ops.schema_version(),
    ops.create_project(text, text, text, jsonb),
    ops.create_environment(text, text, text, jsonb),
    ops.delete_selftest_project(text, text),
    ops.worker_beat(text, text, text, text, integer, text, jsonb),
    ops.list_workers(integer),
    ops.list_runs(text, text, text, text, double precision, text, integer),
    ops.run_status(text, integer),
    ops.retry_run(text, text, text, text),
    ops.operation_names(),
    ops.doctor_report(integer, integer)
to service_role;

notify pgrst, 'reload schema';
