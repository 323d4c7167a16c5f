/*-------------------------------------------------------------------------
 * state_counts.c
 *	  Maintained counts of tasks and steps per state, so that
 *	  system_health_counts() costs the same at a million steps as at ten.
 *
 * A row trigger on tasks and workflow_steps adds each change of state to a
 * small array in backend memory, one frame per subtransaction level (a
 * frame is dropped when its subtransaction aborts and merged into its
 * parent when it commits).  Just before the top-level transaction commits,
 * the sums are added to this backend's own row of tasker.state_counts,
 * keyed by its backend id, in one UPDATE.  Two sessions never update the
 * same row, so counting never serializes the claim and complete paths; and
 * a transaction that changes a thousand states writes its counter row once.
 * Readers add up the rows (one per backend that ever changed a state) plus
 * the unflushed deltas of their own transaction.
 *
 * A prepared transaction (two-phase commit) writes its deltas to a row of
 * its own, keyed by its negated transaction id: the backend's usual row must
 * not stay locked by a transaction that outlives the session's next one.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#if PG_VERSION_NUM < 170000
#include "storage/backendid.h"
#endif
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "tasker.h"

#define TASK_BUCKETS 6
#define STEP_BUCKETS 8
#define STEP_EXHAUSTED 5		/* error with attempts >= max_attempts */

/* bucket names, in column order of the counter tables */
static const char *const task_buckets[TASK_BUCKETS] = {
	"pending", "in_progress", "complete", "error", "cancelled", "resolved_manually"
};
static const char *const step_buckets[STEP_BUCKETS] = {
	"pending", "in_progress", "waiting_for_retry", "complete", "error", "exhausted",
	"cancelled", "resolved_manually"
};

typedef enum CountedMachine
{
	MACHINE_TASK,
	MACHINE_STEP
} CountedMachine;

typedef struct CountFrame
{
	int			nest_level;
	int64		task[TASK_BUCKETS];
	int64		step[STEP_BUCKETS];
} CountFrame;

/* state moves this backend has counted, ever (see TaskerCountedMoves) */
static uint64 counted_moves = 0;

static CountFrame *frames = NULL;
static int	frame_count = 0;
static int	frame_space = 0;
static bool callbacks_registered = false;

/* the kept statements of FlushCounts: an UPDATE, and an upsert for a new row */
static SPIPlanPtr update_plan = NULL;
static SPIPlanPtr upsert_plan = NULL;

static void CountsXactCallback(XactEvent event, void *arg);
static void CountsSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
								  SubTransactionId parentSubid, void *arg);

/*
 * RegisterCallbacksOnce hooks the transaction callbacks the first time this
 * backend counts a change.
 */
static void
RegisterCallbacksOnce(void)
{
	if (callbacks_registered)
		return;
	RegisterXactCallback(CountsXactCallback, NULL);
	RegisterSubXactCallback(CountsSubXactCallback, NULL);
	callbacks_registered = true;
}

/*
 * CurrentFrame returns the frame of the current subtransaction level,
 * pushing a zeroed one when there is none yet.
 */
static CountFrame *
CurrentFrame(void)
{
	int			level = GetCurrentTransactionNestLevel();

	RegisterCallbacksOnce();
	if (frame_count > 0 && frames[frame_count - 1].nest_level == level)
		return &frames[frame_count - 1];

	if (frame_count == frame_space)
	{
		int			space = frame_space == 0 ? 8 : frame_space * 2;

		if (frames == NULL)
			frames = MemoryContextAlloc(TopMemoryContext, sizeof(CountFrame) * space);
		else
			frames = repalloc(frames, sizeof(CountFrame) * space);
		frame_space = space;
	}
	memset(&frames[frame_count], 0, sizeof(CountFrame));
	frames[frame_count].nest_level = level;
	return &frames[frame_count++];
}

/*
 * AddFrame adds the deltas of one frame to another.
 */
static void
AddFrame(CountFrame *into, const CountFrame *from)
{
	int			i;

	for (i = 0; i < TASK_BUCKETS; i++)
		into->task[i] += from->task[i];
	for (i = 0; i < STEP_BUCKETS; i++)
		into->step[i] += from->step[i];
}

/*
 * SumFrames returns the deltas of the whole transaction.
 */
static CountFrame
SumFrames(void)
{
	CountFrame	sum;
	int			i;

	memset(&sum, 0, sizeof(sum));
	for (i = 0; i < frame_count; i++)
		AddFrame(&sum, &frames[i]);
	return sum;
}

/*
 * CountsSubXactCallback drops the frames of an aborted subtransaction and
 * merges those of a committed one into its parent's.
 */
static void
CountsSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
					  SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();

	switch (event)
	{
		case SUBXACT_EVENT_ABORT_SUB:
			while (frame_count > 0 && frames[frame_count - 1].nest_level >= level)
				frame_count--;
			break;
		case SUBXACT_EVENT_COMMIT_SUB:
			while (frame_count > 0 && frames[frame_count - 1].nest_level >= level)
			{
				CountFrame *top = &frames[frame_count - 1];

				if (frame_count > 1 && frames[frame_count - 2].nest_level >= level - 1)
				{
					AddFrame(&frames[frame_count - 2], top);
					frame_count--;
				}
				else
				{
					top->nest_level = level - 1;
					break;
				}
			}
			break;
		default:
			break;
	}
}

/*
 * CounterTable returns the oid of tasker.<name>, or InvalidOid when the
 * extension is gone (dropped earlier in this very transaction).
 */
static Oid
CounterTable(const char *name)
{
	Oid			nsp = get_namespace_oid("tasker", true);

	if (!OidIsValid(nsp))
		return InvalidOid;
	return get_relname_relid(name, nsp);
}

/*
 * RelationOwner returns the owner of a relation.
 */
static Oid
RelationOwner(Oid relid)
{
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * PrepareFlush prepares (once per backend) the statements that add the
 * deltas to a counter row: "UPDATE ... SET c = c + $n ... WHERE slot = $1",
 * and the upsert used when the row does not exist yet.
 */
static void
PrepareFlush(void)
{
	Oid			types[TASK_BUCKETS + STEP_BUCKETS + 1];
	StringInfoData update;
	StringInfoData upsert;
	int			n = 0;
	int			i;
	int			m;

	if (update_plan != NULL && upsert_plan != NULL)
		return;

	initStringInfo(&update);
	initStringInfo(&upsert);
	appendStringInfoString(&update, "UPDATE tasker.state_counts AS c SET ");
	appendStringInfoString(&upsert, "INSERT INTO tasker.state_counts AS c (slot");
	for (m = 0; m < 2; m++)
	{
		const char *prefix = m == 0 ? "tasks_" : "steps_";
		const char *const *names = m == 0 ? task_buckets : step_buckets;
		int			count = m == 0 ? TASK_BUCKETS : STEP_BUCKETS;

		for (i = 0; i < count; i++)
		{
			n++;
			appendStringInfo(&update, "%s%s%s = c.%s%s OPERATOR(pg_catalog.+) $%d",
							 n > 1 ? ", " : "", prefix, names[i], prefix, names[i], n + 1);
			appendStringInfo(&upsert, ", %s%s", prefix, names[i]);
		}
	}
	appendStringInfoString(&update, " WHERE c.slot OPERATOR(pg_catalog.=) $1");
	appendStringInfoString(&upsert, ") VALUES ($1");
	for (i = 1; i <= n; i++)
		appendStringInfo(&upsert, ", $%d", i + 1);
	appendStringInfoString(&upsert, ") ON CONFLICT (slot) DO NOTHING");

	for (i = 0; i <= n; i++)
		types[i] = INT8OID;
	update_plan = SPI_prepare(update.data, n + 1, types);
	upsert_plan = SPI_prepare(upsert.data, n + 1, types);
	if (update_plan == NULL || upsert_plan == NULL)
		elog(ERROR, "could not prepare the state count flush: %s",
			 SPI_result_code_string(SPI_result));
	SPI_keepplan(update_plan);
	SPI_keepplan(upsert_plan);
	pfree(update.data);
	pfree(upsert.data);
}

/*
 * FlushCounts adds the transaction's deltas to the counter row, as the
 * owner of the counter table (a worker role needs no privilege on it).
 */
static void
FlushCounts(bool prepared)
{
	CountFrame	sum = SumFrames();
	Datum		values[TASK_BUCKETS + STEP_BUCKETS + 1];
	bool		any = false;
	Oid			table;
	Oid			saved_user;
	int			saved_context;
	int64		slot;
	int			rc;
	int			i;

	frame_count = 0;
	for (i = 0; i < TASK_BUCKETS; i++)
	{
		values[1 + i] = Int64GetDatum(sum.task[i]);
		any |= sum.task[i] != 0;
	}
	for (i = 0; i < STEP_BUCKETS; i++)
	{
		values[1 + TASK_BUCKETS + i] = Int64GetDatum(sum.step[i]);
		any |= sum.step[i] != 0;
	}
	table = CounterTable("state_counts");
	if (!any || !OidIsValid(table))
		return;

#if PG_VERSION_NUM >= 170000
	slot = MyProcNumber + 1;
#else
	slot = MyBackendId;
#endif
	if (prepared)
		slot = -(int64) GetTopTransactionId();
	values[0] = Int64GetDatum(slot);

	GetUserIdAndSecContext(&saved_user, &saved_context);
	SetUserIdAndSecContext(RelationOwner(table), saved_context | SECURITY_LOCAL_USERID_CHANGE);
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PrepareFlush();
	for (;;)
	{
		rc = SPI_execute_plan(update_plan, values, NULL, false, 0);
		if (rc != SPI_OK_UPDATE)
			elog(ERROR, "state count flush failed: %s", SPI_result_code_string(rc));
		if (SPI_processed > 0)
			break;
		/* a new row: insert it, then add to it (nobody else writes this slot) */
		rc = SPI_execute_plan(upsert_plan, values, NULL, false, 0);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "state count flush failed: %s", SPI_result_code_string(rc));
		if (SPI_processed > 0)
			break;
	}
	SPI_finish();
	PopActiveSnapshot();
	SetUserIdAndSecContext(saved_user, saved_context);
}

/*
 * CountsXactCallback flushes before commit (or prepare) and forgets the
 * deltas when the transaction ends either way.
 */
static void
CountsXactCallback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (frame_count > 0)
				FlushCounts(false);
			break;
		case XACT_EVENT_PRE_PREPARE:
			if (frame_count > 0)
				FlushCounts(true);
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			frame_count = 0;
			break;
		default:
			break;
	}
}

/*
 * TextEquals compares a text datum with a C string.
 */
static bool
TextEquals(text *value, const char *s)
{
	size_t		len = strlen(s);

	return VARSIZE_ANY_EXHDR(value) == len && memcmp(VARDATA_ANY(value), s, len) == 0;
}

/*
 * BucketOf returns the bucket of a row's current_state, or -1.
 */
static int
BucketOf(CountedMachine machine, HeapTuple tuple, TupleDesc desc, bool *exhausted)
{
	const char *const *names = machine == MACHINE_TASK ? task_buckets : step_buckets;
	int			n = machine == MACHINE_TASK ? TASK_BUCKETS : STEP_BUCKETS;
	int			attnum = SPI_fnumber(desc, "current_state");
	bool		isnull;
	Datum		d;
	text	   *state;
	int			bucket = -1;
	int			i;

	*exhausted = false;
	if (attnum <= 0)
		elog(ERROR, "table has no current_state column");
	d = heap_getattr(tuple, attnum, desc, &isnull);
	if (isnull)
		return -1;
	state = DatumGetTextPP(d);
	for (i = 0; i < n; i++)
		if (!(machine == MACHINE_STEP && i == STEP_EXHAUSTED) && TextEquals(state, names[i]))
		{
			bucket = i;
			break;
		}

	if (machine == MACHINE_STEP && bucket == 4)
	{
		bool		null1;
		bool		null2;
		Datum		attempts = heap_getattr(tuple, SPI_fnumber(desc, "attempts"), desc, &null1);
		Datum		max_attempts = heap_getattr(tuple, SPI_fnumber(desc, "max_attempts"), desc, &null2);

		*exhausted = !null1 && !null2 && DatumGetInt32(attempts) >= DatumGetInt32(max_attempts);
	}
	return bucket;
}

/*
 * CountRow adds sign (+1 or -1) for a row to the current frame.
 */
static void
CountRow(CountedMachine machine, HeapTuple tuple, TupleDesc desc, int sign)
{
	bool		exhausted;
	int			bucket = BucketOf(machine, tuple, desc, &exhausted);
	CountFrame *frame;

	if (bucket < 0)
		return;
	frame = CurrentFrame();
	if (machine == MACHINE_TASK)
		frame->task[bucket] += sign;
	else
	{
		frame->step[bucket] += sign;
		if (exhausted)
			frame->step[STEP_EXHAUSTED] += sign;
	}
}

/*
 * ForgetMachine drops one machine's unflushed deltas (its table was just
 * truncated, or recounted).
 */
static void
ForgetMachine(CountedMachine machine)
{
	int			i;

	for (i = 0; i < frame_count; i++)
	{
		if (machine == MACHINE_TASK)
			memset(frames[i].task, 0, sizeof(frames[i].task));
		else
			memset(frames[i].step, 0, sizeof(frames[i].step));
	}
}

/*
 * MachineArgument maps "task" or "step" to the machine; anything else is an
 * error.
 */
static CountedMachine
MachineArgument(const char *name)
{
	if (strcmp(name, "task") == 0)
		return MACHINE_TASK;
	if (strcmp(name, "step") == 0)
		return MACHINE_STEP;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown state machine \"%s\"", name),
			 errhint("Use \"task\" or \"step\".")));
	return MACHINE_TASK;		/* keep the compiler quiet */
}

PG_FUNCTION_INFO_V1(tasker_count_states);

/*
 * tasker_count_states is the row trigger (argument 'task' or 'step') that
 * counts rows: AFTER INSERT OR DELETE (so that an INSERT ... ON CONFLICT DO
 * NOTHING counts only the rows it inserts), and BEFORE UPDATE for changes
 * of state, the hot path (no after-trigger event to queue and refetch).  A
 * BEFORE UPDATE trigger runs once the row is locked, so the update then
 * happens unless the statement fails, and then the (sub)transaction's
 * deltas are dropped with it.  It is named to run after the state
 * machine's check, and no BEFORE trigger after it may skip the row.
 */
Datum
tasker_count_states(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TriggerEvent event;
	CountedMachine machine;
	TupleDesc	desc;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "tasker_count_states: not called by the trigger manager");
	event = trigdata->tg_event;
	if (!TRIGGER_FIRED_FOR_ROW(event) || trigdata->tg_trigger->tgnargs != 1)
		elog(ERROR, "tasker_count_states: must be a row trigger with one argument");
	if (TRIGGER_FIRED_BY_UPDATE(event) ? TRIGGER_FIRED_AFTER(event) : !TRIGGER_FIRED_AFTER(event))
		elog(ERROR, "tasker_count_states: must fire BEFORE UPDATE, or AFTER INSERT or DELETE");
	machine = MachineArgument(trigdata->tg_trigger->tgargs[0]);
	desc = trigdata->tg_relation->rd_att;

	if (TRIGGER_FIRED_BY_UPDATE(event))
	{
		counted_moves++;
		CountRow(machine, trigdata->tg_trigtuple, desc, -1);
		CountRow(machine, trigdata->tg_newtuple, desc, 1);
		return PointerGetDatum(trigdata->tg_newtuple);
	}
	if (TRIGGER_FIRED_BY_INSERT(event))
		CountRow(machine, trigdata->tg_trigtuple, desc, 1);
	else if (TRIGGER_FIRED_BY_DELETE(event))
		CountRow(machine, trigdata->tg_trigtuple, desc, -1);
	return PointerGetDatum(NULL);
}

/*
 * TaskerCountedMoves is how many changes of state of a task or a step this
 * backend has counted so far (rolled-back ones included): an executor
 * compares it around a handler to learn whether the handler moved any.
 */
uint64
TaskerCountedMoves(void)
{
	return counted_moves;
}

PG_FUNCTION_INFO_V1(tasker_unflushed_state_counts);

/*
 * tasker_unflushed_state_counts is tasker._unflushed_state_counts(): the
 * deltas this transaction has counted and not yet written, in the column
 * order of tasker.state_counts (tasks, then steps).
 */
Datum
tasker_unflushed_state_counts(PG_FUNCTION_ARGS)
{
	CountFrame	sum = SumFrames();
	Datum		values[TASK_BUCKETS + STEP_BUCKETS];
	int			i;

	for (i = 0; i < TASK_BUCKETS; i++)
		values[i] = Int64GetDatum(sum.task[i]);
	for (i = 0; i < STEP_BUCKETS; i++)
		values[TASK_BUCKETS + i] = Int64GetDatum(sum.step[i]);
	PG_RETURN_ARRAYTYPE_P(construct_array(values, TASK_BUCKETS + STEP_BUCKETS, INT8OID,
										  sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

PG_FUNCTION_INFO_V1(tasker_forget_state_counts);

/*
 * tasker_forget_state_counts is tasker._forget_state_counts(machine): drops
 * the machine's unflushed deltas of this transaction (its table was
 * truncated, or recount_states() counted them).
 */
Datum
tasker_forget_state_counts(PG_FUNCTION_ARGS)
{
	ForgetMachine(MachineArgument(text_to_cstring(PG_GETARG_TEXT_PP(0))));
	PG_RETURN_VOID();
}
