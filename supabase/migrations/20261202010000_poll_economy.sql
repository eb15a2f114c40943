-- Poll economy: small answers for waiters, and a per-run notification for direct listeners.
--
--   * ops.runs.revision: a change counter of what a waiter shows. It moves when anything of the run
--     row changes except heartbeat_at and event_seq (events have their own cursor), and when one
--     of the run's artifacts is added, changed or removed. Only the database writes it.
--   * ops.poll_run_delta(run_id, after_seq, known_revision, max_events, detail): the events after
--     the cursor with only the columns a waiter prints, and the run row and its artifacts only
--     when the run's revision differs from the one the caller already has. An idle poll answers
--     {"events": [], "has_more": false, "revision": N}.
--   * NOTIFY on channel ops.run_channel(run_id) ('ops_run:' || run_id, at most 40 bytes; channel
--     names are limited to 63) with an empty payload, sent at commit when a run's events were
--     appended or its revision moved. PostgreSQL folds identical notifications of one transaction
--     into one, so a batch of events costs one notification. A listener re-reads with
--     poll_run_delta from its cursor; the notification carries nothing it must not miss.
--
-- ops.poll_run is unchanged: clients of the previous version keep working.

set lock_timeout = '5s';
set statement_timeout = '120s';

-- A constant default and no constraint to check: no table rewrite or scan, only a short ACCESS
-- EXCLUSIVE lock (bounded above). The database alone writes it, counting up from 0.
alter table ops.runs add column revision bigint not null default 0;

comment on column ops.runs.revision is
    'Change counter of what a waiter shows (all but heartbeat_at and event_seq, plus the run''s '
    'artifacts); written by the database only. See ops.poll_run_delta.';

create function ops.run_channel(run_id text)
returns text
language sql
immutable
set search_path = ''
as $$ select 'ops_run:' || run_channel.run_id $$;

-- Runs after ops.tg_runs_guard (triggers of one kind fire in name order), so it sees the row as
-- it will be stored. On INSERT a client-supplied value is ignored.
create function ops.tg_runs_revision()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    if tg_op = 'INSERT' then
        new.revision := 0;
    elsif (to_jsonb(new) - array['heartbeat_at', 'event_seq', 'revision'])
          is distinct from (to_jsonb(old) - array['heartbeat_at', 'event_seq', 'revision']) then
        new.revision := greatest(new.revision, old.revision + 1);
    end if;
    return new;
end;
$$;

-- SECURITY DEFINER: service_role has no UPDATE privilege on runs.revision.
create function ops.tg_artifacts_touch_run()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    if tg_op <> 'DELETE' then
        update ops.runs r set revision = r.revision + 1 where r.run_id = new.run_id;
    end if;
    if tg_op = 'DELETE' or (tg_op = 'UPDATE' and old.run_id is distinct from new.run_id) then
        update ops.runs r set revision = r.revision + 1 where r.run_id = old.run_id;
    end if;
    return null;
end;
$$;

create function ops.tg_runs_notify_change()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    perform pg_notify(ops.run_channel(new.run_id), '');
    return null;
end;
$$;

create trigger runs_revision before insert or update on ops.runs
    for each row execute function ops.tg_runs_revision();
create trigger runs_notify_change after update on ops.runs
    for each row when (old.event_seq is distinct from new.event_seq or old.revision is distinct from new.revision)
    execute function ops.tg_runs_notify_change();
create trigger artifacts_touch_run after insert or update or delete on ops.artifacts
    for each row execute function ops.tg_artifacts_touch_run();

create function ops.poll_run_delta(
    run_id text,
    after_seq bigint default 0,
    known_revision bigint default null,
    max_events integer default 1000,
    detail boolean default false
)
returns jsonb
language plpgsql
-- stable: every statement below reads the same snapshot, so the revision, the run row and the
-- events agree.
stable
set search_path = ''
as $$
declare
    the_run ops.runs := ops.require_run(poll_run_delta.run_id);
    page_size integer := least(greatest(coalesce(poll_run_delta.max_events, 1000), 0), 1000);
    cursor_seq bigint := greatest(coalesce(poll_run_delta.after_seq, 0), 0);
    events jsonb;
    last_seq bigint;
    answer jsonb;
begin
    -- seq, level and message are what a waiter prints; detail adds the time and a non-empty payload
    -- (the Action's summary, groups and annotations read them).
    select coalesce(jsonb_agg(
               jsonb_build_object('seq', e.seq, 'level', e.level, 'message', e.message)
               || case when poll_run_delta.detail then
                      jsonb_build_object('created_at', e.created_at)
                      || case when e.payload <> '{}'::jsonb then jsonb_build_object('payload', e.payload)
                              else '{}'::jsonb end
                  else '{}'::jsonb end
               order by e.seq), '[]'::jsonb),
           max(e.seq)
      into events, last_seq
      from (select ev.seq, ev.level, ev.message, ev.payload, ev.created_at
              from ops.run_events ev
             where ev.run_id = poll_run_delta.run_id and ev.seq > cursor_seq
             order by ev.seq
             limit page_size) e;
    answer := jsonb_build_object(
        'revision', the_run.revision,
        'events', events,
        'has_more', the_run.event_seq > coalesce(last_seq, greatest(cursor_seq, the_run.event_seq))
    );
    if poll_run_delta.known_revision is distinct from the_run.revision then
        answer := answer || jsonb_build_object(
            'run', to_jsonb(the_run),
            'artifacts', (select coalesce(jsonb_agg(to_jsonb(a) order by a.created_at, a.artifact_id), '[]'::jsonb)
                            from ops.artifacts a where a.run_id = poll_run_delta.run_id));
    end if;
    return answer;
end;
$$;

comment on function ops.poll_run_delta(text, bigint, bigint, integer, boolean) is
    'Events after after_seq (seq, level, message; with detail also created_at and payload), and the run '
    'and its artifacts only when its revision differs from known_revision.';

-- New functions are executable by PUBLIC by default: the same privileges as the other ops.* functions.
revoke all on function
    ops.run_channel(text),
    ops.tg_runs_revision(),
    ops.tg_artifacts_touch_run(),
    ops.tg_runs_notify_change(),
    ops.poll_run_delta(text, bigint, bigint, integer, boolean)
from public, anon, authenticated;
grant execute on function
    ops.run_channel(text),
    ops.poll_run_delta(text, bigint, bigint, integer, boolean)
to service_role;

notify pgrst, 'reload schema';
