/*-------------------------------------------------------------------------
 * readiness.c
 *	  The diagnostic readiness test (step_readiness_status and its batch
 *	  form) and the longest-path levels of a DAG (dependency_levels).
 *
 * step_readiness_status recomputes, for each step of a task, whether its
 * parents are done, whether it may be attempted, and whether it is ready,
 * from the task's own edges and steps: two index range scans keyed by
 * task_id (so the cost never depends on other tasks) and a pass over the
 * edges.  It never reads pending_parents, the hot path's bookkeeping, so
 * that the readiness_agreement test compares two independent computations.
 * The same test as a SQL CTE costs several times more for a 1,000-step task
 * (joins, an aggregate and two sorts over rows this code reads once).
 *
 * The rules (DESIGN §4), as tasker._claim applies them:
 *	- a parent is done when it is complete or resolved_manually, or when it
 *	  is skippable and failed for good (a skipped step released its
 *	  children, and keeps them released if an operator retries it later);
 *	- a step may be attempted while attempts < max_attempts, the first time
 *	  (pending: never run, or given a fresh set by retry_step) or, when it
 *	  is retryable, again;
 *	- it is ready when it is pending or waiting_for_retry, every parent is
 *	  done, it may be attempted, and next_attempt_at (written when the
 *	  failure was recorded, by the backoff rule) is NULL or has come.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/skey.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/itemptr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

/* step states the rules look at */
typedef enum StepState
{
	STEP_OTHER,
	STEP_PENDING,
	STEP_IN_PROGRESS,
	STEP_WAITING_FOR_RETRY,
	STEP_COMPLETE,
	STEP_ERROR,
	STEP_CANCELLED,
	STEP_RESOLVED_MANUALLY
} StepState;

/* what one step contributes, copied out of its heap tuple */
typedef struct StepRow
{
	int64		step_id;
	int32		named_step_id;
	Datum		name;
	Datum		state_text;
	StepState	state;
	bool		retryable;
	bool		skippable;
	bool		children_released;
	int32		attempts;
	int32		max_attempts;
	bool		next_null;
	TimestampTz next_attempt_at;
	bool		failure_null;
	TimestampTz last_failure_at;
	bool		backoff_null;
	int32		backoff_request_seconds;
	bool		attempted_null;
	TimestampTz last_attempted_at;
	int32		total_parents;
	int32		completed_parents;
} StepRow;

/* attribute numbers of workflow_steps, looked up by name once per call */
typedef struct StepColumns
{
	AttrNumber	task_id;
	AttrNumber	step_id;
	AttrNumber	named_step_id;
	AttrNumber	name;
	AttrNumber	current_state;
	AttrNumber	retryable;
	AttrNumber	skippable;
	AttrNumber	children_released;
	AttrNumber	attempts;
	AttrNumber	max_attempts;
	AttrNumber	next_attempt_at;
	AttrNumber	last_failure_at;
	AttrNumber	backoff_request_seconds;
	AttrNumber	last_attempted_at;
} StepColumns;

/* the relations a readiness call reads */
typedef struct ReadinessRels
{
	Relation	tasks;
	Relation	steps;
	Relation	edges;
	Oid			tasks_pkey;
	Oid			steps_pkey;
	Oid			edges_pkey;
	StepColumns col;
	AttrNumber	tasks_task_id;
	AttrNumber	edge_task_id;
	AttrNumber	edge_from;
	AttrNumber	edge_to;
} ReadinessRels;

#define READINESS_COLUMNS 16	/* the Rails engine's columns */
#define READINESS_INTERNAL_COLUMNS 18	/* + skippable, runnable */

/*
 * ColumnNumber returns the attribute number of a column, which must exist.
 */
static AttrNumber
ColumnNumber(Relation rel, const char *name)
{
	int			attnum = SPI_fnumber(RelationGetDescr(rel), name);

	if (attnum <= 0)
		elog(ERROR, "column \"%s\" of relation \"%s\" does not exist",
			 name, RelationGetRelationName(rel));
	return (AttrNumber) attnum;
}

/*
 * OpenTaskerTable opens tasker.<name> for reading after checking that the
 * caller may read it (this code reads it directly, not through a query).
 */
static Relation
OpenTaskerTable(Oid nsp, const char *name)
{
	Oid			relid = get_relname_relid(name, nsp);
	AclResult	acl;

	if (!OidIsValid(relid))
		elog(ERROR, "relation tasker.%s does not exist", name);
	acl = pg_class_aclcheck(relid, GetUserId(), ACL_SELECT);
	if (acl != ACLCHECK_OK)
		aclcheck_error(acl, OBJECT_TABLE, name);
	if (check_enable_rls(relid, InvalidOid, false) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("row-level security on tasker.%s is not supported by step readiness", name)));
	return table_open(relid, AccessShareLock);
}

/*
 * PrimaryKeyOf returns the primary key index of a relation.
 */
static Oid
PrimaryKeyOf(Relation rel)
{
	Oid			index;

	/* RelationGetIndexList fills rd_pkindex (its signature is stable) */
	list_free(RelationGetIndexList(rel));
	index = rel->rd_pkindex;

	if (!OidIsValid(index))
		elog(ERROR, "relation \"%s\" has no primary key", RelationGetRelationName(rel));
	return index;
}

/*
 * OpenReadinessRels opens the three tables a readiness call reads and looks
 * up their indexes and columns.
 */
static void
OpenReadinessRels(ReadinessRels *r)
{
	Oid			nsp = get_namespace_oid("tasker", false);
	StepColumns *c = &r->col;

	r->tasks = OpenTaskerTable(nsp, "tasks");
	r->steps = OpenTaskerTable(nsp, "workflow_steps");
	r->edges = OpenTaskerTable(nsp, "workflow_step_edges");
	r->tasks_pkey = PrimaryKeyOf(r->tasks);
	r->steps_pkey = PrimaryKeyOf(r->steps);
	r->edges_pkey = PrimaryKeyOf(r->edges);

	r->tasks_task_id = ColumnNumber(r->tasks, "task_id");
	r->edge_task_id = ColumnNumber(r->edges, "task_id");
	r->edge_from = ColumnNumber(r->edges, "from_step_id");
	r->edge_to = ColumnNumber(r->edges, "to_step_id");
	c->task_id = ColumnNumber(r->steps, "task_id");
	c->step_id = ColumnNumber(r->steps, "workflow_step_id");
	c->named_step_id = ColumnNumber(r->steps, "named_step_id");
	c->name = ColumnNumber(r->steps, "name");
	c->current_state = ColumnNumber(r->steps, "current_state");
	c->retryable = ColumnNumber(r->steps, "retryable");
	c->skippable = ColumnNumber(r->steps, "skippable");
	c->children_released = ColumnNumber(r->steps, "children_released");
	c->attempts = ColumnNumber(r->steps, "attempts");
	c->max_attempts = ColumnNumber(r->steps, "max_attempts");
	c->next_attempt_at = ColumnNumber(r->steps, "next_attempt_at");
	c->last_failure_at = ColumnNumber(r->steps, "last_failure_at");
	c->backoff_request_seconds = ColumnNumber(r->steps, "backoff_request_seconds");
	c->last_attempted_at = ColumnNumber(r->steps, "last_attempted_at");
}

/*
 * CloseReadinessRels closes them (the locks stay until the transaction ends).
 */
static void
CloseReadinessRels(ReadinessRels *r)
{
	table_close(r->edges, AccessShareLock);
	table_close(r->steps, AccessShareLock);
	table_close(r->tasks, AccessShareLock);
}

/* the state names, in StepState order */
static const char *const step_state_names[] = {
	NULL, "pending", "in_progress", "waiting_for_retry", "complete", "error", "cancelled",
	"resolved_manually"
};

/* the same as text datums, made once per call by MakeStateNames */
static Datum state_names[lengthof(step_state_names)];

/*
 * MakeStateNames makes state_names for this call's results.
 */
static void
MakeStateNames(void)
{
	int			i;

	for (i = 1; i < lengthof(step_state_names); i++)
		state_names[i] = CStringGetTextDatum(step_state_names[i]);
}

/*
 * StateOf maps a state name to the rules' enum.
 */
static StepState
StateOf(text *state)
{
	size_t		len = VARSIZE_ANY_EXHDR(state);
	int			i;

	for (i = 1; i < lengthof(step_state_names); i++)
		if (strlen(step_state_names[i]) == len &&
			memcmp(VARDATA_ANY(state), step_state_names[i], len) == 0)
			return (StepState) i;
	return STEP_OTHER;
}

/*
 * TaskExists probes tasks' primary key.
 */
static bool
TaskExists(ReadinessRels *r, int64 task_id)
{
	ScanKeyData key;
	SysScanDesc scan;
	bool		found;

	ScanKeyInit(&key, r->tasks_task_id, BTEqualStrategyNumber, F_INT8EQ,
				Int64GetDatum(task_id));
	scan = systable_beginscan(r->tasks, r->tasks_pkey, true, GetActiveSnapshot(), 1, &key);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	return found;
}

/*
 * ReadSteps returns the steps of a task in id order (the primary key's).
 */
static StepRow *
ReadSteps(ReadinessRels *r, int64 task_id, int *count)
{
	Datum	   *values;
	bool	   *nulls;
	StepColumns *c = &r->col;
	ScanKeyData key;
	SysScanDesc scan;
	StepRow    *rows;
	int			space = 64;
	int			n = 0;
	AttrNumber	last = Max(Max(Max(c->step_id, c->named_step_id), Max(c->name, c->current_state)),
						   Max(Max(Max(c->retryable, c->skippable), Max(c->children_released, c->attempts)),
							   Max(Max(c->max_attempts, c->next_attempt_at),
								   Max(Max(c->last_failure_at, c->backoff_request_seconds),
									   c->last_attempted_at))));

	rows = palloc(sizeof(StepRow) * space);
	ScanKeyInit(&key, c->task_id, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(task_id));
	scan = systable_beginscan(r->steps, r->steps_pkey, true, GetActiveSnapshot(), 1, &key);
	while (HeapTupleIsValid(systable_getnext(scan)))
	{
		StepRow    *s;

		if (n == space)
		{
			space *= 2;
			rows = repalloc(rows, sizeof(StepRow) * space);
		}
		s = &rows[n++];
		/* deform only as far as the last column read (not the results) */
		slot_getsomeattrs(scan->slot, last);
		values = scan->slot->tts_values;
		nulls = scan->slot->tts_isnull;

		s->step_id = DatumGetInt64(values[c->step_id - 1]);
		s->named_step_id = DatumGetInt32(values[c->named_step_id - 1]);
		s->name = PointerGetDatum(PG_DETOAST_DATUM_COPY(values[c->name - 1]));
		s->state = StateOf(DatumGetTextPP(values[c->current_state - 1]));
		s->state_text = s->state != STEP_OTHER ? (Datum) 0 :
			PointerGetDatum(PG_DETOAST_DATUM_COPY(values[c->current_state - 1]));
		s->retryable = DatumGetBool(values[c->retryable - 1]);
		s->skippable = DatumGetBool(values[c->skippable - 1]);
		s->children_released = DatumGetBool(values[c->children_released - 1]);
		s->attempts = DatumGetInt32(values[c->attempts - 1]);
		s->max_attempts = DatumGetInt32(values[c->max_attempts - 1]);
		s->next_null = nulls[c->next_attempt_at - 1];
		s->next_attempt_at = s->next_null ? 0 : DatumGetTimestampTz(values[c->next_attempt_at - 1]);
		s->failure_null = nulls[c->last_failure_at - 1];
		s->last_failure_at = s->failure_null ? 0 : DatumGetTimestampTz(values[c->last_failure_at - 1]);
		s->backoff_null = nulls[c->backoff_request_seconds - 1];
		s->backoff_request_seconds = s->backoff_null ? 0 :
			DatumGetInt32(values[c->backoff_request_seconds - 1]);
		s->attempted_null = nulls[c->last_attempted_at - 1];
		s->last_attempted_at = s->attempted_null ? 0 :
			DatumGetTimestampTz(values[c->last_attempted_at - 1]);
		s->total_parents = 0;
		s->completed_parents = 0;
	}
	systable_endscan(scan);
	*count = n;
	return rows;
}

/*
 * FindStep finds a step by id in rows (in id order); -1 when absent.  The
 * steps of a task are created by one statement, so their ids are usually
 * consecutive: try the offset from the first id before a binary search.
 */
static inline int
FindStep(const StepRow *rows, int n, int64 step_id)
{
	int			lo = 0;
	int			hi = n - 1;

	if (n > 0 && step_id >= rows[0].step_id && step_id - rows[0].step_id < n &&
		rows[step_id - rows[0].step_id].step_id == step_id)
		return (int) (step_id - rows[0].step_id);

	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (rows[mid].step_id == step_id)
			return mid;
		if (rows[mid].step_id < step_id)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

/*
 * ParentDone says whether a parent counts as done for its children.
 */
static inline bool
ParentDone(const StepRow *p)
{
	return p->state == STEP_COMPLETE || p->state == STEP_RESOLVED_MANUALLY ||
		(p->skippable && (p->state == STEP_ERROR || p->children_released));
}

/* sort_tids sorts tuple ids packed as (block << 16 | offset), in line */
#define ST_SORT sort_tids
#define ST_ELEMENT_TYPE uint64
#define ST_COMPARE(a, b) (*(a) < *(b) ? -1 : (*(a) > *(b) ? 1 : 0))
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

/*
 * CountParents reads the task's edges and counts each step's parents and
 * the parents that are done.  It takes the edges' tuple ids from the
 * primary key and visits them in heap order, like a bitmap heap scan: the
 * order create_task writes the edges in need not be the key's, and fetching
 * in key order could then switch pages at almost every edge.
 */
static void
CountParents(ReadinessRels *r, int64 task_id, StepRow *rows, int n)
{
	Snapshot	snapshot = GetActiveSnapshot();
	Relation	index = index_open(r->edges_pkey, AccessShareLock);
	IndexScanDesc iscan;
	IndexFetchTableData *fetch;
	TupleTableSlot *slot;
	ScanKeyData key;
	ItemPointer tid;
	uint64	   *tids;
	bool		in_order = true;
	int			space = 256;
	int			ntids = 0;
	int			i;

	/* the key is on the index's first column, task_id */
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(task_id));
	tids = palloc(sizeof(uint64) * space);
	iscan = index_beginscan(r->edges, index, snapshot, 1, 0);
	index_rescan(iscan, &key, 1, NULL, 0);
	while ((tid = index_getnext_tid(iscan, ForwardScanDirection)) != NULL)
	{
		uint64		packed = ((uint64) ItemPointerGetBlockNumber(tid) << 16) |
			ItemPointerGetOffsetNumber(tid);

		if (ntids == space)
		{
			space *= 2;
			tids = repalloc(tids, sizeof(uint64) * space);
		}
		if (ntids > 0 && tids[ntids - 1] > packed)
			in_order = false;
		tids[ntids++] = packed;
	}
	index_endscan(iscan);
	index_close(index, AccessShareLock);
	if (!in_order)
		sort_tids(tids, ntids);

	fetch = table_index_fetch_begin(r->edges);
	slot = table_slot_create(r->edges, NULL);
	for (i = 0; i < ntids; i++)
	{
		bool		call_again = false;
		bool		all_dead = false;
		bool		isnull;
		int64		from;
		int64		to;
		int			parent;
		int			child;

		ItemPointerData item;

		ItemPointerSet(&item, (BlockNumber) (tids[i] >> 16), (OffsetNumber) (tids[i] & 0xFFFF));
		/* an MVCC snapshot sees at most one version of each chain */
		if (!table_index_fetch_tuple(fetch, &item, snapshot, slot, &call_again, &all_dead))
			continue;
		from = DatumGetInt64(slot_getattr(slot, r->edge_from, &isnull));
		to = DatumGetInt64(slot_getattr(slot, r->edge_to, &isnull));
		parent = FindStep(rows, n, from);
		child = FindStep(rows, n, to);
		if (parent < 0 || child < 0)
			elog(ERROR, "edge %lld -> %lld of task %lld names a step that task does not have",
				 (long long) from, (long long) to, (long long) task_id);
		rows[child].total_parents++;
		if (ParentDone(&rows[parent]))
			rows[child].completed_parents++;
	}
	ExecDropSingleTupleTableSlot(slot);
	table_index_fetch_end(fetch);
	pfree(tids);
}

/*
 * EmitStep appends one step's row to the result.
 */
static void
EmitStep(ReturnSetInfo *rsinfo, int64 task_id, const StepRow *s, TimestampTz now)
{
	TupleDesc	desc = rsinfo->setDesc;
	Datum		values[READINESS_INTERNAL_COLUMNS];
	bool		nulls[READINESS_INTERNAL_COLUMNS];
	bool		waiting = s->state == STEP_PENDING || s->state == STEP_WAITING_FOR_RETRY;
	bool		satisfied = s->completed_parents == s->total_parents;
	bool		eligible = s->attempts < s->max_attempts &&
		(s->state == STEP_PENDING || s->retryable);
	bool		runnable = waiting && satisfied && eligible;
	bool		ready = runnable && (s->next_null || s->next_attempt_at <= now);

	memset(nulls, 0, sizeof(nulls));
	values[0] = Int64GetDatum(s->step_id);
	values[1] = Int64GetDatum(task_id);
	values[2] = Int32GetDatum(s->named_step_id);
	values[3] = s->name;
	values[4] = s->state != STEP_OTHER ? state_names[s->state] : s->state_text;
	values[5] = BoolGetDatum(satisfied);
	values[6] = BoolGetDatum(eligible);
	values[7] = BoolGetDatum(ready);
	values[8] = TimestampTzGetDatum(s->last_failure_at);
	nulls[8] = s->failure_null;
	values[9] = TimestampTzGetDatum(s->next_attempt_at);
	nulls[9] = s->next_null || !waiting;
	values[10] = Int32GetDatum(s->total_parents);
	values[11] = Int32GetDatum(s->completed_parents);
	values[12] = Int32GetDatum(s->attempts);
	values[13] = Int32GetDatum(s->max_attempts);
	values[14] = Int32GetDatum(s->backoff_request_seconds);
	nulls[14] = s->backoff_null;
	values[15] = TimestampTzGetDatum(s->last_attempted_at);
	nulls[15] = s->attempted_null;
	values[16] = BoolGetDatum(s->skippable);
	values[17] = BoolGetDatum(runnable);
	tuplestore_putvalues(rsinfo->setResult, desc, values, nulls);
}

/*
 * Int64ArrayContents returns the elements of a bigint[] argument, raising
 * 22004 when one is NULL.
 */
static int64 *
Int64ArrayContents(ArrayType *array, const char *argument, int *count)
{
	Datum	   *elems;
	bool	   *elem_nulls;
	int64	   *result;
	int			n;
	int			i;

	deconstruct_array(array, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elems, &elem_nulls, &n);
	result = palloc(sizeof(int64) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		if (elem_nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("argument \"%s\" must not contain nulls", argument)));
		result[i] = DatumGetInt64(elems[i]);
	}
	*count = n;
	return result;
}

/*
 * CompareInt64 orders int64 values for qsort.
 */
static int
CompareInt64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return x < y ? -1 : (x > y ? 1 : 0);
}

/*
 * SortUnique sorts ids and drops duplicates; returns the new count.
 */
static int
SortUnique(int64 *ids, int n)
{
	int			kept = 0;
	int			i;

	if (n == 0)
		return 0;
	qsort(ids, n, sizeof(int64), CompareInt64);
	for (i = 0; i < n; i++)
		if (kept == 0 || ids[kept - 1] != ids[i])
			ids[kept++] = ids[i];
	return kept;
}

/*
 * EmitReadiness checks the tasks (ascending, distinct) and appends the
 * readiness of their steps, or only of the wanted ones.
 */
static void
EmitReadiness(FunctionCallInfo fcinfo, int64 *task_ids, int ntasks,
			  int64 *wanted, int nwanted)
{
	ReturnSetInfo *rsinfo;
	ReadinessRels r;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	int			t;

	InitMaterializedSRF(fcinfo, 0);
	rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	if (rsinfo->setDesc->natts != READINESS_COLUMNS &&
		rsinfo->setDesc->natts != READINESS_INTERNAL_COLUMNS)
		elog(ERROR, "step readiness returns %d or %d columns, not %d",
			 READINESS_COLUMNS, READINESS_INTERNAL_COLUMNS, rsinfo->setDesc->natts);

	OpenReadinessRels(&r);
	MakeStateNames();
	for (t = 0; t < ntasks; t++)
		if (!TaskExists(&r, task_ids[t]))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("task %lld does not exist", (long long) task_ids[t])));

	for (t = 0; t < ntasks; t++)
	{
		int			n;
		StepRow    *rows = ReadSteps(&r, task_ids[t], &n);
		int			i;

		CountParents(&r, task_ids[t], rows, n);
		if (wanted == NULL)
		{
			for (i = 0; i < n; i++)
				EmitStep(rsinfo, task_ids[t], &rows[i], now);
		}
		else
		{
			for (i = 0; i < nwanted; i++)
				if (FindStep(rows, n, wanted[i]) < 0)
					ereport(ERROR,
							(errcode(ERRCODE_UNDEFINED_OBJECT),
							 errmsg("step %lld is not a step of task %lld",
									(long long) wanted[i], (long long) task_ids[t])));
			for (i = 0; i < nwanted; i++)
				EmitStep(rsinfo, task_ids[t], &rows[FindStep(rows, n, wanted[i])], now);
		}
		pfree(rows);
	}
	CloseReadinessRels(&r);
}

PG_FUNCTION_INFO_V1(tasker_step_readiness_status);

/*
 * tasker_step_readiness_status is tasker.step_readiness_status(task_id,
 * step_ids DEFAULT NULL).
 */
Datum
tasker_step_readiness_status(PG_FUNCTION_ARGS)
{
	int64		task_id;
	int64	   *wanted = NULL;
	int			nwanted = 0;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument \"input_task_id\" must not be null")));
	task_id = PG_GETARG_INT64(0);
	if (!PG_ARGISNULL(1))
	{
		wanted = Int64ArrayContents(PG_GETARG_ARRAYTYPE_P(1), "step_ids", &nwanted);
		nwanted = SortUnique(wanted, nwanted);
	}
	EmitReadiness(fcinfo, &task_id, 1, wanted, nwanted);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(tasker_step_readiness_status_batch);

/*
 * tasker_step_readiness_status_batch is tasker.step_readiness_status_batch
 * (task_ids), and tasker._step_readiness(task_ids) with two more columns.
 */
Datum
tasker_step_readiness_status_batch(PG_FUNCTION_ARGS)
{
	int64	   *task_ids;
	int			ntasks;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument \"input_task_ids\" must not be null")));
	task_ids = Int64ArrayContents(PG_GETARG_ARRAYTYPE_P(0), "input_task_ids", &ntasks);
	ntasks = SortUnique(task_ids, ntasks);
	EmitReadiness(fcinfo, task_ids, ntasks, NULL, 0);
	return (Datum) 0;
}

/* a node id and its position in the caller's list */
typedef struct IdPosition
{
	int64		id;
	int			position;
} IdPosition;

/*
 * CompareIdPosition orders IdPosition pairs by id for qsort and bsearch.
 */
static int
CompareIdPosition(const void *a, const void *b)
{
	return CompareInt64(&((const IdPosition *) a)->id, &((const IdPosition *) b)->id);
}

/*
 * PositionOf binary-searches pairs sorted by id for an id's position; an
 * unknown id is an error.
 */
static int
PositionOf(const IdPosition *sorted, int n, int64 id)
{
	IdPosition	probe;
	IdPosition *hit;

	probe.id = id;
	hit = bsearch(&probe, sorted, n, sizeof(IdPosition), CompareIdPosition);
	if (hit == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("edge names node %lld, which is not in the node list", (long long) id)));
	return hit->position;
}

PG_FUNCTION_INFO_V1(tasker_longest_path_levels);

/*
 * tasker_longest_path_levels is tasker._longest_path_levels(ids, from, to):
 * for each node, the number of edges on the longest path to it from a node
 * without parents.  Kahn's algorithm: a node is taken once all its parents
 * have been, and then fixes its children's level, so every node and edge
 * is visited once — O(V log V + E log V) with the id lookups, no path
 * enumeration.
 */
Datum
tasker_longest_path_levels(PG_FUNCTION_ARGS)
{
	int			n;
	int			n_from;
	int			n_to;
	int64	   *ids;
	int64	   *edge_from;
	int64	   *edge_to;
	IdPosition *sorted;
	int		   *child_start;
	int		   *child_list;
	int		   *fill;
	int		   *indegree;
	int		   *queue;
	int		   *level;
	Datum	   *result;
	int			head = 0;
	int			tail = 0;
	int			i;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("node and edge arrays must not be null")));
	ids = Int64ArrayContents(PG_GETARG_ARRAYTYPE_P(0), "ids", &n);
	edge_from = Int64ArrayContents(PG_GETARG_ARRAYTYPE_P(1), "edge_from", &n_from);
	edge_to = Int64ArrayContents(PG_GETARG_ARRAYTYPE_P(2), "edge_to", &n_to);
	if (n_from != n_to)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("edge arrays differ in length: %d and %d", n_from, n_to)));

	sorted = palloc(sizeof(IdPosition) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		sorted[i].id = ids[i];
		sorted[i].position = i;
	}
	qsort(sorted, n, sizeof(IdPosition), CompareIdPosition);
	for (i = 1; i < n; i++)
		if (sorted[i].id == sorted[i - 1].id)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("node %lld is listed twice", (long long) sorted[i].id)));

	/* children in compressed form */
	child_start = palloc0(sizeof(int) * (n + 1));
	child_list = palloc(sizeof(int) * Max(n_from, 1));
	fill = palloc0(sizeof(int) * (n + 1));
	indegree = palloc0(sizeof(int) * Max(n, 1));
	for (i = 0; i < n_from; i++)
	{
		int			f = PositionOf(sorted, n, edge_from[i]);
		int			t = PositionOf(sorted, n, edge_to[i]);

		/* reuse the arrays: positions are looked up once */
		edge_from[i] = f;
		edge_to[i] = t;
		child_start[f + 1]++;
		indegree[t]++;
	}
	for (i = 0; i < n; i++)
		child_start[i + 1] += child_start[i];
	for (i = 0; i < n_from; i++)
	{
		int			f = (int) edge_from[i];

		child_list[child_start[f] + fill[f]++] = (int) edge_to[i];
	}

	queue = palloc(sizeof(int) * Max(n, 1));
	level = palloc0(sizeof(int) * Max(n, 1));
	for (i = 0; i < n; i++)
		if (indegree[i] == 0)
			queue[tail++] = i;
	while (head < tail)
	{
		int			node = queue[head++];
		int			c;

		for (c = child_start[node]; c < child_start[node + 1]; c++)
		{
			int			child = child_list[c];

			if (level[child] < level[node] + 1)
				level[child] = level[node] + 1;
			if (--indegree[child] == 0)
				queue[tail++] = child;
		}
	}
	if (tail < n)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("the edges form a cycle through %d of %d nodes", n - tail, n)));

	result = palloc(sizeof(Datum) * Max(n, 1));
	for (i = 0; i < n; i++)
		result[i] = Int32GetDatum(level[i]);
	PG_RETURN_ARRAYTYPE_P(construct_array(result, n, INT4OID, sizeof(int32), true,
										  TYPALIGN_INT));
}
