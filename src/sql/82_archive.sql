--------------------------------------------------------------------------
-- 82_archive.sql: retention — finished tasks deleted in small batches.
--
-- archive_tasks deletes ONE batch and returns how many tasks it deleted;
-- call it in a loop, one transaction per call, until it returns 0 (a
-- function cannot commit between batches, and a procedure that could would
-- run without the pinned search_path and SECURITY DEFINER of the API).
-- Each batch locks only the task rows it deletes, taken with SKIP LOCKED
-- (a task someone holds is left for the next call), and their steps, edges,
-- transitions and annotations, which go with them (ON DELETE CASCADE).  The
-- maintained state counters follow: the row triggers count every deleted
-- task and step.
--------------------------------------------------------------------------

-- Finished tasks by the time they finished: the batches read this index
-- (tasks that are still running are not in it).
CREATE INDEX tasks_finished_idx ON tasker.tasks (completed_at)
    WHERE current_state IN ('complete', 'cancelled', 'resolved_manually', 'error');

CREATE FUNCTION tasker.archive_tasks(older_than interval, batch_size integer DEFAULT 1000,
                                     include_errors boolean DEFAULT false,
                                     namespace text DEFAULT NULL)
    RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cutoff timestamptz;
    namespace_tasks integer[];
    deleted bigint;
BEGIN
    PERFORM tasker._authorize('admin', '', NULL);
    PERFORM tasker._require(older_than, 'older_than');
    PERFORM tasker._require(batch_size, 'batch_size');
    PERFORM tasker._require(include_errors, 'include_errors');
    IF older_than < interval '0' THEN
        RAISE EXCEPTION 'older_than must not be negative, not %', older_than
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF batch_size < 1 OR batch_size > 100000 THEN
        RAISE EXCEPTION 'batch_size must be between 1 and 100000, not %', batch_size
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Call archive_tasks again for the next batch.';
    END IF;
    IF archive_tasks.namespace IS NOT NULL THEN
        SELECT array_agg(nt.named_task_id) INTO namespace_tasks
          FROM tasker.namespaces n JOIN tasker.named_tasks nt USING (namespace_id)
         WHERE n.name = archive_tasks.namespace;
        IF NOT FOUND OR namespace_tasks IS NULL THEN
            PERFORM 1 FROM tasker.namespaces n WHERE n.name = archive_tasks.namespace;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'namespace "%" does not exist', archive_tasks.namespace
                    USING ERRCODE = 'undefined_object';
            END IF;
            RETURN 0;
        END IF;
    END IF;
    cutoff := statement_timestamp() - older_than;

    WITH victims AS (
        SELECT t.task_id
          FROM tasker.tasks t
         WHERE t.current_state IN ('complete', 'cancelled', 'resolved_manually', 'error')
           AND (archive_tasks.include_errors OR t.current_state <> 'error')
           AND t.completed_at < cutoff
           AND (namespace_tasks IS NULL OR t.named_task_id = ANY (namespace_tasks))
         ORDER BY t.completed_at
         LIMIT batch_size
           FOR UPDATE SKIP LOCKED
    )
    DELETE FROM tasker.tasks t USING victims v WHERE t.task_id = v.task_id;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END $$;
COMMENT ON FUNCTION tasker.archive_tasks(interval, integer, boolean, text) IS
    'Deletes one batch of tasks that finished (complete, cancelled, resolved_manually; error too when include_errors) more than older_than ago, with their steps and history; returns how many. Call it again, one transaction per call, until it returns 0.';
