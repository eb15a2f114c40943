-- OdooOps run queue: least-privilege credentials (docs/SECURITY.md explains the model).
--
--   * ops.api_tokens: scoped project tokens (`odooops_pat_…`), stored as a SHA-256 hash only and
--     shown once by ops.create_api_token. A token is bound to one project, optionally to
--     environments and workflow types, and carries the operations it may do: create, read, cancel
--     (what CI needs) and work (what a worker over REST needs). It travels in the request header
--     X-OdooOps-Token next to the project's public anon/publishable key, so the request runs as
--     `anon`, which reaches nothing in `ops` except the token-checked operations below.
--   * odooops_worker: a role for workers on a direct connection (docs/SECURITY.md, one-time
--     setup). It may execute the worker's operations and nothing else: no table privilege, no
--     BYPASSRLS, no other schema. ops.worker_scopes optionally limits a worker login to projects.
--   * Every operation of the queue (create_run, poll_run, cancel_run, claim_next_run, start_run,
--     heartbeat_run, finish_run, append_events, add_artifact, recover_stalled_runs) moves to the
--     schema ops_private, which PostgREST does not expose, and is replaced in `ops` by a wrapper
--     with the SAME signature (clients of the previous version keep calling what they called). The
--     wrapper checks the caller (ops_private.current_access) and then calls the implementation.
--     Which scope each operation needs is said once, in ops_private.operations.
--   * Helpers (raise_error, require_run, not_held_by, …) lose every API grant: no API role may
--     execute a function of `ops` that is not in docs/SECURITY.md's list. Trigger functions become
--     SECURITY DEFINER so that the service role's guarded direct writes still run them.
--
-- Changing an operation later: replace its implementation in ops_private (same signature), or add
-- a function with a new name and expose it with ops_private.expose_operation (docs/UPGRADING.md).

set lock_timeout = '5s';
set statement_timeout = '120s';

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'odooops_worker') then
        create role odooops_worker nologin noinherit;
    end if;
end;
$$;

create schema if not exists ops_private;
revoke all on schema ops_private from public;

-- ---------------------------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------------------------

create table ops.api_tokens (
    token_id text primary key
        constraint api_tokens_token_id_format check (token_id ~ '^tok-[0-9a-f]{12}$'),
    project_id text not null references ops.projects (project_id) on delete cascade,
    -- sha256 of the whole token; the token itself is never stored.
    token_hash bytea not null constraint api_tokens_token_hash_key unique
        constraint api_tokens_token_hash_length check (length(token_hash) = 32),
    scopes text[] not null
        constraint api_tokens_scopes_valid
        check (cardinality(scopes) > 0 and scopes <@ array['create', 'read', 'cancel', 'work']),
    env_ids text[]
        constraint api_tokens_env_ids_not_empty check (cardinality(env_ids) > 0),
    workflow_types text[]
        constraint api_tokens_workflow_types_valid
        check (cardinality(workflow_types) > 0 and workflow_types <@ array['build', 'deploy', 'test']),
    note text constraint api_tokens_note_length check (length(note) <= 500),
    created_by text constraint api_tokens_created_by_length check (length(created_by) <= 200),
    created_at timestamptz not null default now(),
    expires_at timestamptz,
    revoked_at timestamptz,
    revoked_by text constraint api_tokens_revoked_by_length check (length(revoked_by) <= 200),
    last_used_at timestamptz
);

comment on table ops.api_tokens is
    'Scoped project tokens (hash only). Manage with ops.create_api_token, ops.list_api_tokens, ops.revoke_api_token.';

create index api_tokens_project_idx on ops.api_tokens (project_id, created_at);

-- Which projects a worker login (a member of odooops_worker) may work on; none listed = every project.
create table ops.worker_scopes (
    role_name text not null
        constraint worker_scopes_role_name_length check (length(role_name) between 1 and 63),
    project_id text not null references ops.projects (project_id) on delete cascade,
    primary key (role_name, project_id)
);

comment on table ops.worker_scopes is
    'Projects a worker login role (member of odooops_worker) may claim and work on; no row = all projects.';

create index worker_scopes_project_idx on ops.worker_scopes (project_id);

alter table ops.api_tokens enable row level security;
alter table ops.worker_scopes enable row level security;

-- The operations of the queue and the scopes that may call each: the one place this is said.
--   project_from: run    — the run_id argument names the run, hence the project;
--                 create — the project_id argument (empty: the token's project);
--                 claim  — the project_id/env_id/workflow_type filter, narrowed to the scope;
--                 any    — no project argument: a caller limited to projects gets <name>_in(projects, …);
--                 none   — no project involved (the worker registry): scope checked, call passed on.
--   actor_argument: the argument that records who did it, filled with the caller when empty.
create table ops_private.operations (
    function_name text primary key,
    scopes text[] not null
        constraint operations_scopes_valid
        check (cardinality(scopes) > 0 and scopes <@ array['create', 'read', 'cancel', 'work']),
    project_from text not null
        constraint operations_project_from_valid
        check (project_from in ('run', 'create', 'claim', 'any', 'none')),
    actor_argument text
);

insert into ops_private.operations (function_name, scopes, project_from, actor_argument) values
    ('create_run', array['create'], 'create', null),
    ('poll_run', array['read', 'work'], 'run', null),
    ('cancel_run', array['cancel'], 'run', 'cancelled_by'),
    ('claim_next_run', array['work'], 'claim', null),
    ('start_run', array['work'], 'run', null),
    ('heartbeat_run', array['work'], 'run', null),
    ('finish_run', array['work'], 'run', null),
    ('append_events', array['work'], 'run', null),
    ('add_artifact', array['work'], 'run', null),
    ('recover_stalled_runs', array['work'], 'any', null),
    -- 20261202000000_exactly_once: the worker's writes that answer what the call did
    ('start_run_v2', array['work'], 'run', null),
    ('heartbeat_run_v2', array['work'], 'run', null),
    ('finish_run_v2', array['work'], 'run', null),
    -- 20261202010000_poll_economy: the delta poll and the run's notification channel
    ('poll_run_delta', array['read', 'work'], 'run', null),
    ('run_channel', array['read', 'work'], 'run', null),
    -- 20261202020000_operator_commands: a run's status, its retry, the worker registry
    ('run_status', array['read'], 'run', null),
    ('retry_run', array['create'], 'run', null),
    ('worker_beat', array['work'], 'none', null);

-- ---------------------------------------------------------------------------------------------
-- Who is calling: the service role (or the owner), a token, or a worker login
-- ---------------------------------------------------------------------------------------------

create type ops_private.access as (
    caller text,            -- 'role service_role', 'token tok-…', 'role worker_a', …
    token_id text,          -- the token's id, for a token
    scopes text[],          -- null: every operation
    project_ids text[],     -- null: every project
    env_ids text[],         -- null: every environment
    workflow_types text[]   -- null: every workflow type
);

create type ops_private.claim_filter as (project_id text, env_id text, workflow_type text);

create function ops_private.token_hash(token text)
returns bytea
language sql
immutable
set search_path = ''
as $$ select pg_catalog.sha256(pg_catalog.convert_to(token_hash.token, 'UTF8')) $$;

-- The token of the current PostgREST request: header X-OdooOps-Token (PostgREST passes headers as
-- JSON with lower-cased names in request.headers).
create function ops_private.request_token()
returns text
language sql
stable
set search_path = ''
as $$
    select nullif(btrim(coalesce(nullif(current_setting('request.headers', true), ''), '{}')::json
        ->> 'x-odooops-token'), '')
$$;

create function ops_private.token_access(token text)
returns ops_private.access
language plpgsql
set search_path = ''
as $$
declare
    found_token ops.api_tokens;
    renew_hint text;
begin
    -- One lookup by the hash's unique index: how much of a guessed token is right changes nothing
    -- the server does (the hash of a near miss shares nothing with the right one).
    select * into found_token from ops.api_tokens t where t.token_hash = ops_private.token_hash(token_access.token);
    if not found then
        perform ops.raise_error('PT401', 'unknown OdooOps token: no token with this value exists',
            'Check that the secret holds the whole token printed by `odooops token create` (it starts with '
            || 'odooops_pat_); a token is shown once, so create a new one if it was lost.');
    end if;
    renew_hint := format('Create a new token (odooops token create --project %s --scope %s) and store it in '
        || 'the secret in place of this one.', found_token.project_id, array_to_string(found_token.scopes, ','));
    if found_token.revoked_at is not null then
        perform ops.raise_error('PT401',
            format('OdooOps token %s of project %s was revoked at %s', found_token.token_id,
                found_token.project_id, ops.utc_text(found_token.revoked_at)),
            renew_hint);
    end if;
    if found_token.expires_at is not null and found_token.expires_at <= now() then
        perform ops.raise_error('PT401',
            format('OdooOps token %s of project %s expired at %s', found_token.token_id,
                found_token.project_id, ops.utc_text(found_token.expires_at)),
            renew_hint);
    end if;
    -- At most one write a minute per token, and none in a read-only transaction (a GET).
    if (found_token.last_used_at is null or found_token.last_used_at < now() - interval '1 minute')
       and current_setting('transaction_read_only') = 'off' then
        update ops.api_tokens t set last_used_at = now() where t.token_id = found_token.token_id;
    end if;
    return row('token ' || found_token.token_id, found_token.token_id, found_token.scopes,
        array[found_token.project_id], found_token.env_ids, found_token.workflow_types)::ops_private.access;
end;
$$;

-- The caller of the operation being run. Called from SECURITY DEFINER functions, where
-- current_user is the owner: the caller is the role set by PostgREST (SET ROLE, the GUC `role`)
-- or, on a direct connection without SET ROLE, the login (session_user), which nobody can change.
create function ops_private.current_access()
returns ops_private.access
language plpgsql
set search_path = ''
as $$
declare
    set_role text := current_setting('role');
    acting text := case when set_role = 'none' then session_user::text else set_role end;
    worker_login text;
    projects text[];
begin
    if acting in ('anon', 'authenticated') then
        if ops_private.request_token() is null then
            perform ops.raise_error('PT401',
                'no OdooOps token in the request: the project''s anon/publishable key alone reaches nothing in ops',
                'Send a scoped token in the X-OdooOps-Token header (the Action''s token input, or ODOOOPS_TOKEN '
                || 'for the CLI and the worker); create one with odooops token create.');
        end if;
        return ops_private.token_access(ops_private.request_token());
    end if;
    if acting = 'service_role'
       or exists (select 1 from pg_catalog.pg_roles r where r.rolname = acting and r.rolsuper)
       or pg_catalog.pg_has_role(acting, (select n.nspowner from pg_catalog.pg_namespace n where n.nspname = 'ops'),
                                 'MEMBER') then
        return row(acting, null, null, null, null, null)::ops_private.access;
    end if;
    -- A worker login: its scope is keyed by the login, so that a scoped worker that runs
    -- SET ROLE odooops_worker keeps its own scope.
    if pg_catalog.pg_has_role(acting, 'odooops_worker', 'MEMBER') then
        worker_login := case when acting = 'odooops_worker' then session_user::text else acting end;
        select array_agg(s.project_id order by s.project_id) into projects
          from ops.worker_scopes s where s.role_name = worker_login;
        return row(worker_login, null, array['work'], projects, null, null)::ops_private.access;
    end if;
    perform ops.raise_error('PT403',
        format('role %s may not use the OdooOps queue', acting),
        'Connect as a member of odooops_worker (workers), as service_role, or send a scoped token.');
    return null;
end;
$$;

create function ops_private.require_scope(granted ops_private.access, function_name text)
returns void
language plpgsql
stable
set search_path = ''
as $$
declare
    needed text[] := (select o.scopes from ops_private.operations o where o.function_name = require_scope.function_name);
begin
    if granted.scopes is null or granted.scopes && needed then
        return;
    end if;
    if granted.token_id is null then
        perform ops.raise_error('PT403',
            format('role %s may not call ops.%s: a worker role may only claim, start, heartbeat, finish, log to, '
                || 'add artifacts to, read and recover runs', granted.caller, require_scope.function_name),
            'Use the service_role key or a token with the needed scope for anything else.');
    end if;
    perform ops.raise_error('PT403',
        format('OdooOps token %s may %s; ops.%s needs the scope %s, which it does not have',
            granted.token_id, array_to_string(granted.scopes, ', '), require_scope.function_name,
            array_to_string(needed, ' or ')),
        format('Create a token whose --scope includes %s (odooops token create), and keep tokens that '
            || 'only need to read without cancel.', array_to_string(needed, ' or ')));
end;
$$;

create function ops_private.require_within(granted ops_private.access, env_id text, workflow_type text)
returns void
language plpgsql
stable
set search_path = ''
as $$
begin
    if granted.env_ids is not null and not (require_within.env_id = any (granted.env_ids)) then
        perform ops.raise_error('PT403',
            format('OdooOps token %s may act only in environment(s) %s, not %s', granted.token_id,
                array_to_string(granted.env_ids, ', '), coalesce(require_within.env_id, '(any)')),
            'Use a token created for this environment (odooops token create --env ...).');
    end if;
    if granted.workflow_types is not null and not (require_within.workflow_type = any (granted.workflow_types)) then
        perform ops.raise_error('PT403',
            format('OdooOps token %s may act only on workflow type(s) %s, not %s', granted.token_id,
                array_to_string(granted.workflow_types, ', '), coalesce(require_within.workflow_type, '(any)')),
            'Use a token created for this workflow type (odooops token create --workflow-type ...).');
    end if;
end;
$$;

-- An operation on one run: a run outside the caller's projects is reported exactly as a missing
-- run, so that a token of project A cannot even learn that a run of project B exists.
create function ops_private.authorize_run(function_name text, run_id text)
returns ops_private.access
language plpgsql
set search_path = ''
as $$
declare
    granted ops_private.access := ops_private.current_access();
    target record;
begin
    perform ops_private.require_scope(granted, authorize_run.function_name);
    if granted.project_ids is null and granted.env_ids is null and granted.workflow_types is null then
        return granted;
    end if;
    select r.project_id, r.env_id, r.workflow_type into target from ops.runs r where r.run_id = authorize_run.run_id;
    if not found or (granted.project_ids is not null and not (target.project_id = any (granted.project_ids))) then
        perform ops.raise_run_not_found(authorize_run.run_id);
    end if;
    perform ops_private.require_within(granted, target.env_id, target.workflow_type);
    return granted;
end;
$$;

create function ops_private.require_project(granted ops_private.access, project_id text)
returns void
language plpgsql
stable
set search_path = ''
as $$
begin
    if granted.project_ids is null or require_project.project_id = any (granted.project_ids) then
        return;
    end if;
    if granted.token_id is not null then
        perform ops.raise_error('PT403',
            format('OdooOps token %s is for project %s, not %s', granted.token_id,
                granted.project_ids[1], require_project.project_id),
            'Use the token of that project, or leave project_id empty to use the token''s project.');
    end if;
    perform ops.raise_error('PT403',
        format('role %s may work only on project(s) %s, not %s', granted.caller,
            array_to_string(granted.project_ids, ', '), require_project.project_id),
        'Start the worker with --project set to one of its projects, or extend ops.worker_scopes.');
end;
$$;

-- create_run: the project to create in (the token's own when none is given).
create function ops_private.authorize_create(function_name text, project_id text, env_id text, workflow_type text)
returns text
language plpgsql
set search_path = ''
as $$
declare
    granted ops_private.access := ops_private.current_access();
    project text := authorize_create.project_id;
begin
    perform ops_private.require_scope(granted, authorize_create.function_name);
    if project is null and granted.project_ids is not null and cardinality(granted.project_ids) = 1 then
        project := granted.project_ids[1];
    end if;
    if project is null then
        perform ops.raise_error('PT400', 'project_id is required', 'Name the project registered in ops.projects.');
    end if;
    perform ops_private.require_project(granted, project);
    perform ops_private.require_within(granted, coalesce(authorize_create.env_id, 'dev'), authorize_create.workflow_type);
    return project;
end;
$$;

-- claim_next_run: the filter narrowed to what the caller may claim.
create function ops_private.authorize_claim(function_name text, project_id text, env_id text, workflow_type text)
returns ops_private.claim_filter
language plpgsql
set search_path = ''
as $$
declare
    granted ops_private.access := ops_private.current_access();
    wanted ops_private.claim_filter := row(authorize_claim.project_id, authorize_claim.env_id,
        authorize_claim.workflow_type)::ops_private.claim_filter;
begin
    perform ops_private.require_scope(granted, authorize_claim.function_name);
    if wanted.env_id is null and cardinality(granted.env_ids) = 1 then
        wanted.env_id := granted.env_ids[1];
    end if;
    if wanted.workflow_type is null and cardinality(granted.workflow_types) = 1 then
        wanted.workflow_type := granted.workflow_types[1];
    end if;
    if granted.env_ids is not null or granted.workflow_types is not null then
        perform ops_private.require_within(granted, wanted.env_id, wanted.workflow_type);
    end if;
    if granted.project_ids is null then
        return wanted;
    end if;
    if wanted.project_id is not null then
        perform ops_private.require_project(granted, wanted.project_id);
        return wanted;
    end if;
    -- Several projects and no filter: the project of the oldest queued run among them.
    select q.project_id into wanted.project_id from ops.runs q
     where q.status = 'queued' and q.project_id = any (granted.project_ids)
       and (wanted.env_id is null or q.env_id = wanted.env_id)
       and (wanted.workflow_type is null or q.workflow_type = wanted.workflow_type)
     order by q.queued_at, q.run_id
     limit 1;
    wanted.project_id := coalesce(wanted.project_id, granted.project_ids[1]);
    return wanted;
end;
$$;

create function ops_private.authorize_any(function_name text)
returns ops_private.access
language plpgsql
set search_path = ''
as $$
declare
    granted ops_private.access := ops_private.current_access();
begin
    perform ops_private.require_scope(granted, authorize_any.function_name);
    return granted;
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- Recovery limited to projects (scoped workers must not requeue or fail other projects' runs).
-- Same rule as ops_private.recover_stalled_runs, over the given projects only.
-- ---------------------------------------------------------------------------------------------

create function ops_private.recover_stalled_runs_in(
    project_ids text[], lease_seconds integer default 60, max_attempts integer default 3
)
returns setof ops.runs
language plpgsql
set search_path = ''
as $$
declare
    stalled ops.runs;
    recovered ops.runs;
    why text;
begin
    if recover_stalled_runs_in.lease_seconds is null or recover_stalled_runs_in.lease_seconds < 1 then
        perform ops.raise_error('PT400', 'lease_seconds must be a positive number of seconds');
    end if;
    if recover_stalled_runs_in.max_attempts is null or recover_stalled_runs_in.max_attempts < 1 then
        perform ops.raise_error('PT400', 'max_attempts must be at least 1');
    end if;
    for stalled in
        select * from ops.runs r
         where r.status in ('claimed', 'running') and r.project_id = any (recover_stalled_runs_in.project_ids)
           and r.heartbeat_at < now() - make_interval(secs => recover_stalled_runs_in.lease_seconds)
         order by r.heartbeat_at
         for update skip locked
    loop
        why := format('worker %s sent no heartbeat for %ss (last at %s) during attempt %s of %s',
            stalled.claimed_by, recover_stalled_runs_in.lease_seconds, ops.utc_text(stalled.heartbeat_at),
            stalled.attempt, recover_stalled_runs_in.max_attempts);
        if stalled.attempt >= recover_stalled_runs_in.max_attempts then
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
-- Exposing an operation: its implementation goes to ops_private, a checked wrapper with the same
-- signature takes its place in ops. Later migrations call this for new operations.
-- ---------------------------------------------------------------------------------------------

create function ops_private.expose_operation(function_name text)
returns void
language plpgsql
set search_path = ''
as $$
declare
    spec ops_private.operations;
    impl record;
    argument_names text[];
    call_arguments text;
    authorize text;
    declarations text;
    result_statement text;
    invocation text;
begin
    select * into spec from ops_private.operations o where o.function_name = expose_operation.function_name;
    if not found then
        raise exception 'ops_private.operations has no row for %', expose_operation.function_name;
    end if;
    for impl in
        select p.oid, p.proretset, p.prorettype, p.proargnames, p.proargmodes,
               pg_catalog.pg_get_function_arguments(p.oid) as arguments,
               pg_catalog.pg_get_function_identity_arguments(p.oid) as identity_arguments,
               pg_catalog.pg_get_function_result(p.oid) as result
          from pg_catalog.pg_proc p
         where p.pronamespace = 'ops'::regnamespace and p.proname = spec.function_name
    loop
        execute format('alter function ops.%I(%s) set schema ops_private', spec.function_name, impl.identity_arguments);
        select coalesce(array_agg(n.name order by n.position), '{}') into argument_names
          from unnest(impl.proargnames, coalesce(impl.proargmodes, array_fill('i'::"char", array[cardinality(impl.proargnames)])))
               with ordinality as n(name, mode, position)
         where n.mode in ('i', 'b') and n.name <> '';
        case spec.project_from
            when 'run' then
                declarations := 'granted ops_private.access := ops_private.authorize_run(%1$L, %1$I.run_id);';
            when 'create' then
                declarations := 'granted text := ops_private.authorize_create(%1$L, %1$I.project_id, %1$I.env_id, '
                    || '%1$I.workflow_type);';
            when 'claim' then
                declarations := 'granted ops_private.claim_filter := ops_private.authorize_claim(%1$L, '
                    || '%1$I.project_id, %1$I.env_id, %1$I.workflow_type);';
            else
                declarations := 'granted ops_private.access := ops_private.authorize_any(%1$L);';
        end case;
        authorize := format(declarations, spec.function_name);
        select string_agg(
                   format('%I => %s', a.name,
                       case
                           when spec.project_from = 'create' and a.name = 'project_id' then 'granted'
                           when spec.project_from = 'claim' and a.name in ('project_id', 'env_id', 'workflow_type')
                               then format('granted.%I', a.name)
                           when a.name = spec.actor_argument then
                               format('coalesce(nullif(%1$I.%2$I, %3$L), granted.caller)',
                                   spec.function_name, a.name, '')
                           else format('%I.%I', spec.function_name, a.name)
                       end),
                   ', ' order by a.position)
          into call_arguments
          from unnest(argument_names) with ordinality as a(name, position);
        invocation := format('ops_private.%I(%s)', spec.function_name, coalesce(call_arguments, ''));
        if spec.project_from = 'any' then
            -- A caller limited to projects gets the project-limited variant <name>_in.
            result_statement := format(
                'if granted.project_ids is null then return query select * from %s; '
                || 'else return query select * from ops_private.%I(granted.project_ids, %s); end if;',
                invocation, spec.function_name || '_in',
                (select string_agg(format('%I => %I.%I', a.name, spec.function_name, a.name), ', ')
                   from unnest(argument_names) a(name)));
        elsif impl.proretset then
            result_statement := format('return query select * from %s;', invocation);
        elsif impl.prorettype = 'void'::regtype then
            result_statement := format('perform %s; return;', invocation);
        else
            result_statement := format('return %s;', invocation);
        end if;
        execute format(
            'create function ops.%I(%s) returns %s language plpgsql security definer set search_path = '''' '
            || 'as $wrapper$ declare %s begin %s end; $wrapper$',
            spec.function_name, impl.arguments, impl.result, authorize, result_statement);
        execute format('comment on function ops.%I(%s) is %L', spec.function_name, impl.identity_arguments,
            format('Checked entry point (scopes: %s) of ops_private.%s; see docs/SECURITY.md.',
                array_to_string(spec.scopes, ', '), spec.function_name));
        execute format('revoke all on function ops.%I(%s) from public', spec.function_name, impl.identity_arguments);
        execute format('grant execute on function ops.%I(%s) to service_role, anon, authenticated',
            spec.function_name, impl.identity_arguments);
        if 'work' = any (spec.scopes) then
            execute format('grant execute on function ops.%I(%s) to odooops_worker',
                spec.function_name, impl.identity_arguments);
        end if;
    end loop;
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- Token management (service role or the owner): ops.create_api_token / list / revoke
-- ---------------------------------------------------------------------------------------------

create function ops_private.token_info(token ops.api_tokens)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select jsonb_build_object(
        'token_id', token.token_id, 'project_id', token.project_id, 'scopes', to_jsonb(token.scopes),
        'env_ids', to_jsonb(token.env_ids), 'workflow_types', to_jsonb(token.workflow_types),
        'note', token.note, 'created_by', token.created_by, 'created_at', token.created_at,
        'expires_at', token.expires_at, 'revoked_at', token.revoked_at, 'revoked_by', token.revoked_by,
        'last_used_at', token.last_used_at,
        'state', case when token.revoked_at is not null then 'revoked'
                      when token.expires_at <= now() then 'expired' else 'active' end)
$$;

create function ops_private.require_manager()
returns void
language plpgsql
set search_path = ''
as $$
begin
    if (ops_private.current_access()).scopes is not null then
        perform ops.raise_error('PT403', 'managing OdooOps tokens needs the service role or the database owner',
            'Run odooops token with SUPABASE_SERVICE_ROLE_KEY (or DATABASE_URL of the owner), never from CI.');
    end if;
end;
$$;

create function ops.create_api_token(
    project_id text,
    scopes text[],
    env_ids text[] default null,
    workflow_types text[] default null,
    expires_at timestamptz default null,
    note text default null,
    created_by text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
    token text;
    created ops.api_tokens;
    missing text;
begin
    perform ops_private.require_manager();
    perform 1 from ops.projects p where p.project_id = create_api_token.project_id;
    if not found then
        perform ops.raise_error('PT404', format('project %s not found in ops.projects', create_api_token.project_id),
            'Register the project first (insert a row into ops.projects).');
    end if;
    if create_api_token.scopes is null or cardinality(create_api_token.scopes) = 0
       or not create_api_token.scopes <@ array['create', 'read', 'cancel', 'work'] then
        perform ops.raise_error('PT400',
            format('scopes must be a non-empty list among create, read, cancel, work, got %s',
                coalesce(array_to_string(create_api_token.scopes, ','), 'null')));
    end if;
    if create_api_token.workflow_types is not null and (cardinality(create_api_token.workflow_types) = 0
       or not create_api_token.workflow_types <@ array['build', 'deploy', 'test']) then
        perform ops.raise_error('PT400',
            format('workflow types must be among build, deploy, test, got %s',
                array_to_string(create_api_token.workflow_types, ',')));
    end if;
    if create_api_token.env_ids is not null then
        select string_agg(e.env_id, ', ') into missing from unnest(create_api_token.env_ids) e(env_id)
         where not exists (select 1 from ops.environments x
                            where x.project_id = create_api_token.project_id and x.env_id = e.env_id);
        if cardinality(create_api_token.env_ids) = 0 or missing is not null then
            perform ops.raise_error('PT404',
                format('environment(s) %s not found for project %s in ops.environments',
                    coalesce(missing, '(none given)'), create_api_token.project_id),
                'Register the environment first, or leave the token unrestricted by environment.');
        end if;
    end if;
    if create_api_token.expires_at is not null and create_api_token.expires_at <= now() then
        perform ops.raise_error('PT400',
            format('expires_at must be in the future, got %s', ops.utc_text(create_api_token.expires_at)));
    end if;
    token := 'odooops_pat_' || translate(encode(decode(
        replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', ''), 'hex'),
        'base64'), '+/=', '-_');
    insert into ops.api_tokens (token_id, project_id, token_hash, scopes, env_ids, workflow_types, note,
                                created_by, expires_at)
    values ('tok-' || left(replace(gen_random_uuid()::text, '-', ''), 12), create_api_token.project_id,
            ops_private.token_hash(token),
            array(select distinct s from unnest(create_api_token.scopes) s order by 1),
            create_api_token.env_ids, create_api_token.workflow_types, create_api_token.note,
            coalesce(create_api_token.created_by, (ops_private.current_access()).caller),
            create_api_token.expires_at)
    returning * into created;
    return ops_private.token_info(created) || jsonb_build_object('token', token);
end;
$$;

create function ops.list_api_tokens(project_id text default null)
returns jsonb
language plpgsql
security definer
stable
set search_path = ''
as $$
begin
    perform ops_private.require_manager();
    return (select coalesce(jsonb_agg(ops_private.token_info(t) order by t.created_at, t.token_id), '[]'::jsonb)
              from ops.api_tokens t
             where list_api_tokens.project_id is null or t.project_id = list_api_tokens.project_id);
end;
$$;

create function ops.revoke_api_token(token_id text, revoked_by text default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
    revoked ops.api_tokens;
begin
    perform ops_private.require_manager();
    update ops.api_tokens t
       set revoked_at = now(),
           revoked_by = coalesce(revoke_api_token.revoked_by, (ops_private.current_access()).caller)
     where t.token_id = revoke_api_token.token_id and t.revoked_at is null
    returning * into revoked;
    if found then
        return ops_private.token_info(revoked) || jsonb_build_object('outcome', 'revoked');
    end if;
    select * into revoked from ops.api_tokens t where t.token_id = revoke_api_token.token_id;
    if not found then
        perform ops.raise_error('PT404', format('token %s not found', revoke_api_token.token_id),
            'List the tokens with odooops token list.');
    end if;
    return ops_private.token_info(revoked) || jsonb_build_object('outcome', 'already_revoked');
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------------------------

-- Trigger functions run as the statement's role; as SECURITY DEFINER they keep working for the
-- service role's direct writes once the helpers they call lose their API grants.
do $$
declare
    trigger_function regprocedure;
begin
    for trigger_function in
        select p.oid::regprocedure from pg_catalog.pg_proc p
         where p.pronamespace = 'ops'::regnamespace and p.prorettype = 'trigger'::regtype
    loop
        execute format('alter function %s security definer', trigger_function);
    end loop;
end;
$$;

-- Operator functions: not operations of the queue, for the service role (and the owner) only.
-- Together with ops_private.operations this is the whole API of `ops`; docs/SECURITY.md lists it.
create table ops_private.operator_functions (function_name text primary key);
insert into ops_private.operator_functions (function_name) values
    ('create_api_token'), ('list_api_tokens'), ('revoke_api_token'),
    -- 20261202020000_operator_commands
    ('schema_version'), ('create_project'), ('create_environment'), ('delete_selftest_project'),
    ('list_workers'), ('list_runs'), ('operation_names'), ('doctor_report');

-- Every other function of ops is a helper: no API role may execute it (a function created by a
-- migration is executable by PUBLIC, hence anon, until revoked). Operator functions become
-- SECURITY DEFINER, so that they keep working without the helpers' grants.
revoke all on all functions in schema ops_private from public, anon, authenticated, service_role;
do $$
declare
    found_function record;
begin
    for found_function in
        select p.oid::regprocedure as signature, p.proname in (select f.function_name from ops_private.operator_functions f)
               as for_operators
          from pg_catalog.pg_proc p
         where p.pronamespace = 'ops'::regnamespace and p.prorettype <> 'trigger'::regtype
           and p.proname not in (select o.function_name from ops_private.operations o)
    loop
        execute format('revoke all on function %s from public, anon, authenticated, service_role',
            found_function.signature);
        if found_function.for_operators then
            execute format('alter function %s security definer', found_function.signature);
            execute format('grant execute on function %s to service_role', found_function.signature);
        end if;
    end loop;
end;
$$;

select ops_private.expose_operation(o.function_name) from ops_private.operations o order by o.function_name;

-- anon/authenticated/odooops_worker: the schema, and only the checked operations granted by
-- expose_operation; no table, no sequence.
grant usage on schema ops to anon, authenticated, odooops_worker;
revoke all on all tables in schema ops from anon, authenticated, odooops_worker;
-- Tokens are managed through the functions; the service role reads them there, never the hashes.
revoke all on ops.api_tokens, ops.worker_scopes from public, anon, authenticated, service_role;

notify pgrst, 'reload schema';
