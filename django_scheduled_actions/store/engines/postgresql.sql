-- The PostgreSQL statements of the job table, by name (store/engines/postgresql.py reads them). Each one
-- is one text whatever the number of jobs (arrays, not VALUES lists), so it is prepared once per
-- connection (transactions.fetch_prepared). {name} marks what the engine fills in before preparing.

-- name: pending_priorities
-- The priorities of pending jobs, highest first, each found by one probe of the due index (the last
-- row of p is NULL). Portable: the SQLite engine runs the same text.
WITH RECURSIVE p(v) AS (
    SELECT MAX(priority) FROM scheduled_actions_job WHERE state = 'pending'
  UNION ALL
    SELECT (SELECT MAX(priority) FROM scheduled_actions_job WHERE state = 'pending' AND priority < p.v)
    FROM p WHERE p.v IS NOT NULL
)
SELECT v FROM p WHERE v IS NOT NULL

-- name: next_due_time
-- The earliest scheduled time of a pending job: the first entry of the due index at each pending
-- priority, in one statement (the worker asks after every claim that came back short). {queues}:
-- nothing, or "AND queue = ANY(%s)".
WITH RECURSIVE p(v) AS (
    SELECT MAX(priority) FROM scheduled_actions_job WHERE state = 'pending'
  UNION ALL
    SELECT (SELECT MAX(priority) FROM scheduled_actions_job WHERE state = 'pending' AND priority < p.v)
    FROM p WHERE p.v IS NOT NULL
)
SELECT MIN((
    SELECT scheduled_time FROM scheduled_actions_job
    WHERE state = 'pending' AND priority = p.v {queues} ORDER BY scheduled_time LIMIT 1)) FROM p WHERE v IS NOT NULL

-- name: claim
-- Claims at {priority} (the highest pending one: "(SELECT v FROM top)", else %s) and tells the next
-- lower priority that has pending jobs (first column; NULL: none), so a claim walks no further than it
-- must and an idle worker's claim of a new job is one round trip. The other columns are NULL when
-- nothing was claimed. due_by: the caller's now, or (NULL) the database's clock; the lease is always
-- the database's. The actions among the first "start" jobs (in claim order) are marked started as
-- settle_actions would: the worker asks for that when as many of its threads are idle, and each of
-- these actions then runs at once on one of them, without a write of its own.
-- "id = ANY(ARRAY(subquery))", not "id IN (subquery)": the planner then looks the claimed rows up by
-- primary key whatever the table holds; with IN it may hash-join a scan of the whole table.
-- {conditions}: the queues served, the limited names and queues left out. {columns}: what is returned.
WITH clock AS (SELECT COALESCE(%s::timestamptz, statement_timestamp()) AS due_by),
top AS (SELECT MAX(priority) AS v FROM scheduled_actions_job WHERE state = 'pending'),
picked AS (
    SELECT id, kind, row_number() OVER (ORDER BY scheduled_time, id) AS n FROM (
        SELECT id, kind, scheduled_time FROM scheduled_actions_job
        WHERE state = 'pending' AND scheduled_time <= (SELECT due_by FROM clock) AND priority = {priority} {conditions}
        ORDER BY priority DESC, scheduled_time, id LIMIT %s FOR UPDATE SKIP LOCKED) AS due),
starting AS (SELECT id FROM picked WHERE kind = 'action' AND n <= %s),
claimed AS (
    UPDATE scheduled_actions_job SET state = 'in_progress', worker_id = %s, token = %s,
        lease_expires_at = statement_timestamp() + %s::interval,
        started_at = CASE WHEN id = ANY(ARRAY(SELECT id FROM starting)) THEN (SELECT due_by FROM clock)
            ELSE started_at END,
        attempts = attempts + CASE WHEN id = ANY(ARRAY(SELECT id FROM starting)) THEN 1 ELSE 0 END
    WHERE id = ANY(ARRAY(SELECT id FROM picked))
    RETURNING ctid::text AS ctid, {columns})
SELECT (SELECT MAX(priority) FROM scheduled_actions_job WHERE state = 'pending' AND priority < {priority}),
       claimed.*
FROM (SELECT 1) AS one LEFT JOIN claimed ON TRUE

-- name: settle_actions
-- Succeeded actions (done_*) and the next ones marked started (start_*), in one statement. Not
-- "state = 'in_progress'" but "j.state || '' = 'in_progress'": the planner would prefer the small
-- partial lease index, whose every entry it then joins against (slow once many jobs are in progress);
-- this leaves it the primary key. Idempotent like update_claimed: a repeat whose first commit landed
-- unacknowledged changes nothing (the success at the same completed_time matches again).
WITH done AS (
    UPDATE scheduled_actions_job AS j SET state = 'success', result = v.result, completed_time = %(now)s,
        lease_expires_at = NULL
    FROM unnest(%(done_ids)s::bigint[], %(done_tokens)s::text[], %(results)s::jsonb[]) AS v(id, token, result)
    WHERE j.id = v.id AND j.token = v.token
        AND (j.state || '' = 'in_progress' OR (j.state || '' = 'success' AND j.completed_time = %(now)s))
    RETURNING j.id),
began AS (
    UPDATE scheduled_actions_job AS j SET started_at = %(now)s,
        attempts = j.attempts + CASE WHEN j.started_at = %(now)s THEN 0 ELSE 1 END
    FROM unnest(%(start_ids)s::bigint[], %(start_tokens)s::text[]) AS s(id, token)
    WHERE j.id = s.id AND j.token = s.token AND j.state || '' = 'in_progress' RETURNING j.id)
SELECT true, id FROM done UNION ALL SELECT false, id FROM began

-- name: complete_mutations
-- The mutations that ran in the caller's serializable transaction, found by the ctid their claim
-- returned. Inside a serializable transaction an index lookup takes a predicate lock on a whole index
-- page, so concurrent completions of neighbouring jobs would abort each other; a TID scan locks only
-- the row. "id + 0" and "state || ''" keep the planner off the primary key and the partial lease index:
-- a TID scan per row is the only plan left. A row that moved since its claim matches nothing.
UPDATE scheduled_actions_job AS j SET state = 'success', result = v.result,
    completed_time = %s, lease_expires_at = NULL, started_at = v.started, attempts = j.attempts + 1
FROM unnest(%s::tid[], %s::bigint[], %s::text[], %s::jsonb[], %s::timestamptz[]) AS v(ctid, id, token, result, started)
WHERE j.ctid = v.ctid AND j.id + 0 = v.id AND j.token = v.token AND j.state || '' = 'in_progress'
RETURNING j.id

-- name: complete_mutation
-- One mutation of complete_mutations, by its ctid (a mutation run alone in its transaction).
UPDATE scheduled_actions_job SET state = 'success', result = %s::jsonb, completed_time = %s,
    lease_expires_at = NULL, started_at = %s, attempts = attempts + 1
WHERE ctid = %s::tid AND id = %s AND token = %s AND state = 'in_progress'
