/*-------------------------------------------------------------------------
 * executor.c
 *	  Executors: dynamic workers that claim ready SQL-handler steps in
 *	  small batches and run them, as the role that registered the template,
 *	  with statement_timeout = the step's timeout, committing the steps of
 *	  a batch together while tasker.executor_commit_window allows.
 *
 * The handler runs in a subtransaction; its writes, the step's results and
 * the step's transition commit together (exactly-once).  An error rolls
 * the subtransaction back and is recorded as a failed attempt.  A claim
 * that dies with the executor (kill -9, SIGTERM mid-step) is recovered by
 * the dispatcher, which sees the executor gone.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "parser/parse_func.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "handler_api.h"
#include "security.h"
#include "spi_util.h"
#include "tasker.h"
#include "workers.h"

/*
 * Most steps one transaction runs: each takes a subtransaction id, and a
 * backend caches 64 of them (PGPROC_MAX_CACHED_SUBXIDS) before every
 * snapshot in the server gets slower.
 */
#define TASKER_MAX_GROUP 32

/*
 * How many more times a step running alone reruns its handler, at the same
 * attempt, after a deadlock: a deadlock is the doing of two transactions,
 * not a failure of the step.
 */
#define TASKER_DEADLOCK_RERUNS 3

typedef struct ClaimedStep
{
	int64		step_id;
	int64		task_id;
	char	   *step_name;
	int32		attempt;
	Datum		input;			/* jsonb, in the batch context */
	Oid			handler;
	Oid			owner;
	Oid			handler_owner;	/* the handler's owner at registration */
	int64		timeout_ms;		/* 0: none */
	bool		locked;			/* by this group's _lock_attempts */
	bool		release;		/* its children wait for it (when locked) */
} ClaimedStep;

/*
 * How a group completes its steps, by what the installed SQL has (the
 * library can be newer than the extension's SQL between make install and
 * ALTER EXTENSION UPDATE).
 */
typedef enum GroupMode
{
	GROUP_STEPWISE,				/* before 0.3.0: complete_step, one step per task */
	GROUP_SETTLED,				/* 0.3.0, 0.4.0: _accept_completion per step, one settlement */
	GROUP_BATCHED				/* 0.5.0 on: _lock_attempts first, one _accept_completions */
} GroupMode;

/*
 * Settlement is what a group's completed steps leave to do before its
 * commit: release their children and finalize their tasks, once for the
 * whole group — and, when batched, record the steps' completions too.
 */
typedef struct Settlement
{
	bool		batched;		/* step_ids and results are to be accepted */
	int			completed;		/* steps accepted (or to accept) as complete */
	Datum		task_ids[TASKER_MAX_GROUP];
	Datum		step_ids[TASKER_MAX_GROUP];
	Datum		results[TASKER_MAX_GROUP];
	int			releasing;		/* of them, steps whose children wait */
	Datum		release_task_ids[TASKER_MAX_GROUP];
	Datum		release_step_ids[TASKER_MAX_GROUP];
} Settlement;

static void Settle(Settlement *settlement);

/*
 * CurrentGroupMode says how the installed SQL lets a group complete its
 * steps; looked up per group, under the extension's lock.
 */
static GroupMode
CurrentGroupMode(void)
{
	Oid			lock_argtypes[2] = {INT8ARRAYOID, INT4ARRAYOID};
	Oid			accept_argtypes[3] = {INT8OID, INT4OID, JSONBOID};

	if (OidIsValid(LookupFuncName(list_make2(makeString("tasker"),
											 makeString("_lock_attempts")),
								  2, lock_argtypes, true)))
		return GROUP_BATCHED;
	if (OidIsValid(LookupFuncName(list_make2(makeString("tasker"),
											 makeString("_accept_completion")),
								  3, accept_argtypes, true)))
		return GROUP_SETTLED;
	return GROUP_STEPWISE;
}

static TaskerExecutorSlot *my_slot = NULL;
static Oid	executor_database = InvalidOid;
static char *worker_name = NULL;
static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr accept_plan = NULL;
static SPIPlanPtr complete_plan = NULL;
static SPIPlanPtr settle_plan = NULL;
static SPIPlanPtr lock_plan = NULL;
static SPIPlanPtr accept_batch_plan = NULL;
static SPIPlanPtr fail_plan = NULL;

/* moving average of this executor's step durations, ms (< 0: none yet) */
static double average_step_ms = -1;

/* the next group is the step handed back by the last one, alone */
static bool run_alone_next = false;

/*
 * TaskerStartExecutor asks the postmaster for one more executor.
 */
bool
TaskerStartExecutor(Oid database_id)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "tasker");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "TaskerExecutorMain");
	snprintf(worker.bgw_name, BGW_MAXLEN, "tasker executor for database %u", database_id);
	snprintf(worker.bgw_type, BGW_MAXLEN, "tasker executor");
	worker.bgw_main_arg = ObjectIdGetDatum(database_id);
	worker.bgw_notify_pid = 0;
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		return false;
	pfree(handle);
	return true;
}

static void
ExecutorShutdown(int code, Datum arg)
{
	if (my_slot == NULL)
		return;
	LWLockAcquire(tasker_shared->lock, LW_EXCLUSIVE);
	if (my_slot->pid == MyProcPid)
		memset(my_slot, 0, sizeof(*my_slot));
	LWLockRelease(tasker_shared->lock);
	my_slot = NULL;
}

static void
SetSlotStep(int64 step_id, Oid role_id, bool idle)
{
	LWLockAcquire(tasker_shared->lock, LW_EXCLUSIVE);
	my_slot->step_id = step_id;
	my_slot->role_id = role_id;
	my_slot->idle = idle;
	my_slot->since = GetCurrentTimestamp();
	LWLockRelease(tasker_shared->lock);
}

/*
 * StepErrorContext names the task and step in every message raised while
 * a step runs.
 */
static void
StepErrorContext(void *arg)
{
	ClaimedStep *step = (ClaimedStep *) arg;

	errcontext("tasker step \"%s\" (step %lld, task %lld, attempt %d)",
			   step->step_name, (long long) step->step_id,
			   (long long) step->task_id, step->attempt);
}

/*
 * BatchSize is how many steps to claim: as many as this executor's steps,
 * at their average duration, fit in one commit window, within
 * [1, tasker.executor_batch_size].  Fast steps are claimed by the dozen and
 * commit together; slow ones one at a time, so that none waits behind
 * another while other executors could run it.  A new executor's first
 * claim is of one step.
 */
static int
BatchSize(void)
{
	double		fit;

	if (tasker_executor_commit_window == 0)
		return tasker_executor_batch_size;
	if (average_step_ms < 0)
		return 1;				/* nothing measured yet: one step, timed */
	fit = tasker_executor_commit_window / Max(average_step_ms, 0.001);
	return (int) Max(1, Min(fit, (double) tasker_executor_batch_size));
}

/*
 * ClaimBatch claims up to tasker.executor_batch_size steps in a transaction
 * of its own; the rows are copied into batch_context.
 */
static int
ClaimBatch(MemoryContext batch_context, ClaimedStep **steps)
{
	Datum		args[2];
	Oid			argtypes[2] = {TEXTOID, INT4OID};
	int			n = 0;
	uint64		i;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "tasker executor: claiming");

	if (!TaskerExtensionInstalled())
	{
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		return -1;
	}

	/*
	 * The claim counts the attempts: it must be on disk before a handler
	 * runs.  A handler that crashes the server (a C function's segfault,
	 * the OOM killer) would otherwise take its uncounted claim down with
	 * it, and be claimed again, and crash the server again, forever.
	 * "local": no need to wait for a synchronous standby as well.
	 */
	(void) set_config_option("synchronous_commit", "local", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	args[0] = CStringGetTextDatum(worker_name);
	args[1] = Int32GetDatum(BatchSize());
	TaskerSpiExecCached(&claim_plan,
						"SELECT step_id, task_id, step_name, attempt, input, handler, owner_role,"
						" timeout_ms, handler_owner FROM tasker._claim_sql_steps($1, $2)",
						2, argtypes, args, NULL, SPI_OK_SELECT);

	*steps = MemoryContextAllocZero(batch_context, sizeof(ClaimedStep) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		ClaimedStep *s = &(*steps)[n++];
		bool		isnull;
		MemoryContext old;
		Datum		d;

		s->step_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		s->task_id = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		s->attempt = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
		s->handler = DatumGetObjectId(SPI_getbinval(tup, desc, 6, &isnull));
		s->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 7, &isnull));
		d = SPI_getbinval(tup, desc, 8, &isnull);
		s->timeout_ms = isnull ? 0 : DatumGetInt64(d);
		d = SPI_getbinval(tup, desc, 9, &isnull);
		s->handler_owner = isnull ? InvalidOid : DatumGetObjectId(d);
		old = MemoryContextSwitchTo(batch_context);
		s->step_name = TextDatumGetCString(SPI_getbinval(tup, desc, 3, &isnull));
		s->input = PointerGetDatum(PG_DETOAST_DATUM_COPY(SPI_getbinval(tup, desc, 5, &isnull)));
		MemoryContextSwitchTo(old);
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return n;
}

/*
 * CallHandler runs the handler as the template's owner and returns its
 * result (NULL becomes {}).  It first checks that the handler is still what
 * was registered and that the owner may still execute it; settings the
 * handler changes (even with a plain SET) are undone when it returns, so
 * that nothing it does outlives its step in this session.
 *
 * It runs as a security-restricted operation, as PostgreSQL runs index
 * expressions for VACUUM: nothing the handler leaves behind may run later
 * as the executor's superuser — no temporary table (the next step, of
 * another role, would find it first in its search_path), no WITH HOLD
 * cursor (persisted at commit), no deferred trigger (fired at commit).
 * Constraints are made IMMEDIATE first, so that deferrable constraints are
 * checked at the end of each statement, as the handler's role, instead of
 * being refused.
 */
static Datum
CallHandler(ClaimedStep *step)
{
	FmgrInfo	flinfo;
	LOCAL_FCINFO(fcinfo, 1);
	Oid			save_userid;
	int			save_sec_context;
	Datum		result;
	int			save_nestlevel;

	TaskerCheckHandler(step->handler, step->owner, step->handler_owner);

	AfterTriggerSetState(makeNode(ConstraintsSetStmt)); /* SET CONSTRAINTS ALL IMMEDIATE */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(step->owner, save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	save_nestlevel = NewGUCNestLevel();
	TaskerEnterHandler(step->owner);

	fmgr_info(step->handler, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = step->input;
	fcinfo->args[0].isnull = false;
	if (step->timeout_ms > 0)
		enable_timeout_after(STATEMENT_TIMEOUT, (int) Min(step->timeout_ms, INT_MAX));
	result = FunctionCallInvoke(fcinfo);
	if (step->timeout_ms > 0)
		disable_timeout(STATEMENT_TIMEOUT, false);

	TaskerLeaveHandler();
	AtEOXact_GUC(false, save_nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec_context);

	if (fcinfo->isnull)
		result = DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
	return result;
}

/*
 * ErrorDocument turns a caught error into the step's error document.
 */
static Datum
ErrorDocument(ErrorData *edata)
{
	Datum		args[5];
	Oid			argtypes[5] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	const char *texts[5];
	int			i;

	texts[0] = unpack_sql_state(edata->sqlerrcode);
	texts[1] = edata->message;
	texts[2] = edata->detail;
	texts[3] = edata->hint;
	texts[4] = edata->context;
	for (i = 0; i < 5; i++)
	{
		if (texts[i] == NULL)
		{
			nulls[i] = 'n';
			args[i] = (Datum) 0;
		}
		else
			args[i] = CStringGetTextDatum(texts[i]);
	}
	TaskerSpiExec("SELECT pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object("
				  "'sqlstate', $1, 'message', $2,"
				  " 'detail', $3, 'hint', $4, 'context', $5))",
				  5, argtypes, args, nulls, SPI_OK_SELECT);
	return SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
}

/*
 * RecordFailure records a failed attempt: retryable unless the handler
 * raised the permanent-failure SQLSTATE, with the backoff it asked for.
 */
static void
RecordFailure(ClaimedStep *step, ErrorData *edata)
{
	Datum		args[5];
	Oid			argtypes[5] = {INT8OID, INT4OID, JSONBOID, BOOLOID, INT4OID};
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	int			backoff = TaskerBackoffRequest();

	args[0] = Int64GetDatum(step->step_id);
	args[1] = Int32GetDatum(step->attempt);
	args[2] = ErrorDocument(edata);
	args[3] = BoolGetDatum(edata->sqlerrcode != TASKER_ERRCODE_PERMANENT_FAILURE);
	args[4] = Int32GetDatum(backoff);
	if (backoff < 0)
		nulls[4] = 'n';
	TaskerSpiExecCached(&fail_plan, "SELECT tasker.fail_step($1, $2, $3, $4, $5)",
						5, argtypes, args, nulls, SPI_OK_SELECT);
}

/*
 * ExtendLeaseForTimeout makes the claim's lease outlive the handler's
 * timeout (extend_lease counts from the transaction's start).
 */
static void
ExtendLeaseForTimeout(ClaimedStep *step)
{
	Datum		args[3];
	Oid			argtypes[3] = {INT8OID, INT4OID, TEXTOID};

	if (step->timeout_ms <= (int64) tasker_default_lease * 1000)
		return;
	args[0] = Int64GetDatum(step->step_id);
	args[1] = Int32GetDatum(step->attempt);
	args[2] = CStringGetTextDatum(psprintf("%lld milliseconds",
										   (long long) step->timeout_ms + 60000));
	TaskerSpiExec("SELECT tasker.extend_lease($1, $2, $3::pg_catalog.interval)", 3, argtypes, args,
				  NULL, SPI_OK_SELECT);
}

/*
 * LockIfCurrent locks the step's row for the rest of the transaction and
 * says whether the step is still in progress at the attempt claimed.  A
 * rerun must not run the handler of a step cancelled, resolved or reaped
 * meanwhile; while the row is held, no one can make it so.  (The rerun's
 * completion then updates a row its parent locked, a MultiXact: a rare
 * path.)
 */
static bool
LockIfCurrent(ClaimedStep *step)
{
	Datum		args[2];
	Oid			argtypes[2] = {INT8OID, INT4OID};

	args[0] = Int64GetDatum(step->step_id);
	args[1] = Int32GetDatum(step->attempt);
	TaskerSpiExec("SELECT 1 FROM tasker.workflow_steps WHERE workflow_step_id = $1"
				  " AND attempts = $2 AND current_state = 'in_progress' FOR UPDATE",
				  2, argtypes, args, NULL, SPI_OK_SELECT);
	return SPI_processed == 1;
}

typedef enum StepOutcome
{
	STEP_RECORDED,				/* completed, failed, or found stale */
	STEP_ENDS_GROUP,			/* failure recorded (locks its task): commit now */
	STEP_RUN_ALONE				/* nothing kept: run it in a transaction of its own */
} StepOutcome;

/*
 * RunStep runs one claimed step inside the current transaction: the
 * handler and the completion in a subtransaction, kept or undone together;
 * on error, the failure is recorded instead.
 *
 * grouped says that earlier steps of the same transaction hold locks.  A
 * deadlock may then be their doing rather than the step's, and an error
 * while recording a failure must not undo their work: in both cases the
 * step's own work is undone and it is handed back to run alone, where it
 * holds what it always held and errors propagate as they always did.  A
 * handler of a batched group that moves a task or step through tasker's
 * API is handed back the same way (see below).
 */
static StepOutcome
RunStep(ClaimedStep *step, bool grouped, Settlement *settlement)
{
	MemoryContext step_context = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorContextCallback errcallback;
	volatile bool failed = false;
	volatile bool moved = false;
	ErrorData  *volatile edata = NULL;
	volatile StepOutcome outcome = STEP_RECORDED;
	int			runs;
	int64		timeout_ms = step->timeout_ms;
	TimestampTz first_run = GetCurrentTimestamp();

	SetSlotStep(step->step_id, step->owner, false);
	pgstat_report_activity(STATE_RUNNING, psprintf("tasker step %lld (%s)",
													(long long) step->step_id,
													step->step_name));

	errcallback.callback = StepErrorContext;
	errcallback.arg = step;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	ExtendLeaseForTimeout(step);
	for (runs = 1;; runs++)
	{
		TaskerResetBackoffRequest();
		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(step_context);
		PG_TRY();
		{
			uint64		moves_before = TaskerCountedMoves();
			Datum		result = CallHandler(step);
			Datum		args[3];
			Oid			argtypes[3] = {INT8OID, INT4OID, JSONBOID};
			bool		stale;
			bool		release;
			bool		isnull;

			args[0] = Int64GetDatum(step->step_id);
			args[1] = Int32GetDatum(step->attempt);
			args[2] = result;
			if (settlement != NULL && settlement->batched)
			{
				/*
				 * Locked since the group began: accepted with the group.  Unless
				 * the handler moved a task or step itself (through tasker's API):
				 * it may have made this step or an accepted neighbour stale, which
				 * the group would learn only at its end.  Its work is then undone
				 * and it runs alone, where its completion is recorded at once.
				 */
				moved = TaskerCountedMoves() != moves_before;
				if (!moved)
					TaskerCheckSize("tasker.max_results_size", result,
									psprintf("results of step %lld", (long long) step->step_id));
				stale = moved;
				release = step->release;
			}
			else if (settlement == NULL)
			{
				/* SQL older than 0.3.0: complete_step does it all */
				TaskerSpiExecCached(&complete_plan, "SELECT tasker.complete_step($1, $2, $3)",
									3, argtypes, args, NULL, SPI_OK_SELECT);
				stale = !DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
													1, &isnull));
				release = false;
			}
			else
			{
				TaskerSpiExecCached(&accept_plan,
									"SELECT task_id, release FROM tasker._accept_completion($1, $2, $3)",
									3, argtypes, args, NULL, SPI_OK_SELECT);
				(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &stale);
				release = !stale && DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
															   SPI_tuptable->tupdesc, 2, &isnull));
			}
			if (stale)
				RollbackAndReleaseCurrentSubTransaction();	/* undo the handler's writes */
			else if (settlement == NULL)
				ReleaseCurrentSubTransaction();
			else
			{
				ReleaseCurrentSubTransaction();
				MemoryContextSwitchTo(step_context);
				if (settlement->batched)
				{
					settlement->step_ids[settlement->completed] = Int64GetDatum(step->step_id);
					settlement->results[settlement->completed] =
						PointerGetDatum(PG_DETOAST_DATUM_COPY(result));
				}
				settlement->task_ids[settlement->completed++] = Int64GetDatum(step->task_id);
				if (release)
				{
					settlement->release_task_ids[settlement->releasing] = Int64GetDatum(step->task_id);
					settlement->release_step_ids[settlement->releasing++] = Int64GetDatum(step->step_id);
				}
			}
			MemoryContextSwitchTo(step_context);
			CurrentResourceOwner = owner;
		}
		PG_CATCH();
		{
			disable_timeout(STATEMENT_TIMEOUT, false);
			TaskerLeaveHandler();
			MemoryContextSwitchTo(step_context);
			edata = CopyErrorData();
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(step_context);
			CurrentResourceOwner = owner;
			failed = true;
		}
		PG_END_TRY();

		/*
		 * Alone, a deadlock is not the step's failure: the other transaction
		 * usually goes on once this one's subtransaction let go, so after a
		 * short random pause the handler runs again, at the same attempt,
		 * within what is left of its timeout, if the step is still current.
		 * (Grouped, the step is handed back to run alone, below.)
		 */
		if (!failed || grouped || edata->sqlerrcode != ERRCODE_T_R_DEADLOCK_DETECTED ||
			runs > TASKER_DEADLOCK_RERUNS)
			break;
		pg_usleep(1000 + (long) pg_prng_uint64_range(&pg_global_prng_state, 0, 10000 * runs));
		CHECK_FOR_INTERRUPTS();
		if (timeout_ms > 0)
		{
			step->timeout_ms = timeout_ms -
				TimestampDifferenceMilliseconds(first_run, GetCurrentTimestamp());
			if (step->timeout_ms <= 0)
				break;
		}
		if (!LockIfCurrent(step))
			break;				/* stale: recording the failure does nothing */
		ereport(LOG,
				(errmsg("tasker step %lld deadlocked; running its handler again (%d of %d)",
						(long long) step->step_id, runs, TASKER_DEADLOCK_RERUNS),
				 errdetail_internal("%s", edata->message)));
		FreeErrorData(edata);
		edata = NULL;
		failed = false;
	}
	step->timeout_ms = timeout_ms;

	if (moved)
		outcome = STEP_RUN_ALONE;
	else if (failed && grouped && edata->sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED)
		outcome = STEP_RUN_ALONE;
	else if (failed && grouped)
	{
		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(step_context);
		PG_TRY();
		{
			/*
			 * fail_step may finalize the task: the completions of the group
			 * so far (perhaps of the same task) are settled first, so that it
			 * judges the task as it will commit.  The group then ends: a
			 * second settlement later in the same transaction would take
			 * locks out of the ascending order every writer keeps, and could
			 * deadlock with another group's.
			 */
			if (settlement != NULL)
				Settle(settlement);
			RecordFailure(step, edata);
			ReleaseCurrentSubTransaction();
			if (settlement != NULL)
			{
				settlement->completed = settlement->releasing = 0;
				outcome = STEP_ENDS_GROUP;
			}
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(step_context);
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			outcome = STEP_RUN_ALONE;
		}
		PG_END_TRY();
		MemoryContextSwitchTo(step_context);
		CurrentResourceOwner = owner;
	}
	else if (failed)
	{
		/*
		 * fail_step locks the task's row; a settlement later in this
		 * transaction would then lock children after a task, against the
		 * order of every other settlement (children, then tasks): the
		 * group ends here.
		 */
		RecordFailure(step, edata);
		if (settlement != NULL)
			outcome = STEP_ENDS_GROUP;
	}

	error_context_stack = errcallback.previous;
	SetSlotStep(0, InvalidOid, false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return outcome;
}

/* Int8ArrayDatum makes a bigint[] of n int8 Datums. */
static Datum
Int8ArrayDatum(Datum *values, int n)
{
	return PointerGetDatum(construct_array(values, n, INT8OID, 8, FLOAT8PASSBYVAL,
										   TYPALIGN_DOUBLE));
}

/*
 * Settle releases the children of the group's completed steps and
 * finalizes their tasks, just before the group commits: those rows' locks
 * are then held for the commit only, not while the rest of the group runs
 * (other executors completing siblings of the same task would wait for
 * them).  Its locks are taken in ascending id, as every writer's; should a
 * deadlock still choose it, it is retried, the steps' work kept.
 */
static void
Settle(Settlement *settlement)
{
	MemoryContext context = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	Datum		args[3];
	Oid			argtypes[3] = {INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID};
	char		nulls[3] = {' ', ' ', ' '};
	int			attempt;

	if (settlement->completed == 0)
		return;
	pgstat_report_activity(STATE_RUNNING, "tasker executor: settling");
	args[0] = Int8ArrayDatum(settlement->task_ids, settlement->completed);
	if (settlement->releasing == 0)
	{
		nulls[1] = nulls[2] = 'n';
		args[1] = args[2] = (Datum) 0;
	}
	else
	{
		args[1] = Int8ArrayDatum(settlement->release_task_ids, settlement->releasing);
		args[2] = Int8ArrayDatum(settlement->release_step_ids, settlement->releasing);
	}

	if (settlement->batched)
	{
		/*
		 * The steps are locked by this transaction, so recording them cannot
		 * deadlock; and in a subtransaction each row would get a MultiXact.
		 */
		Datum		accept_args[3];
		Oid			accept_argtypes[3] = {INT8ARRAYOID, INT8ARRAYOID, JSONBARRAYOID};

		accept_args[0] = args[0];
		accept_args[1] = Int8ArrayDatum(settlement->step_ids, settlement->completed);
		accept_args[2] = PointerGetDatum(construct_array(settlement->results, settlement->completed,
														 JSONBOID, -1, false, TYPALIGN_INT));
		TaskerSpiExecCached(&accept_batch_plan, "SELECT tasker._accept_completions($1, $2, $3)",
							3, accept_argtypes, accept_args, NULL, SPI_OK_SELECT);
	}

	for (attempt = 1;; attempt++)
	{
		volatile bool deadlocked = false;

		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(context);
		PG_TRY();
		{
			TaskerSpiExecCached(&settle_plan, "SELECT tasker._settle_completions($1, $2, $3)",
								3, argtypes, args, nulls, SPI_OK_SELECT);
			ReleaseCurrentSubTransaction();
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(context);
			edata = CopyErrorData();
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			if (edata->sqlerrcode != ERRCODE_T_R_DEADLOCK_DETECTED || attempt >= 3)
			{
				/* its subtransaction closed first: a caller's own may catch it */
				MemoryContextSwitchTo(context);
				CurrentResourceOwner = owner;
				ReThrowError(edata);
			}
			deadlocked = true;
		}
		PG_END_TRY();
		MemoryContextSwitchTo(context);
		CurrentResourceOwner = owner;
		if (!deadlocked)
			return;
	}
}

/*
 * LockGroup locks, with tasker._lock_attempts, the steps the group may run
 * (the first TASKER_MAX_GROUP not done), before any handler runs, and
 * marks done the ones found stale — reclaimed after their lease expired,
 * cancelled, resolved — without running them; it returns how many those
 * are.  The locks are held to the group's commit: nothing can make a step
 * stale while its handler runs, so the handlers' completions are recorded
 * together at the end.
 */
static int
LockGroup(ClaimedStep *steps, bool *done, int n)
{
	Datum		ids[TASKER_MAX_GROUP];
	Datum		attempts[TASKER_MAX_GROUP];
	int			candidates[TASKER_MAX_GROUP];
	int			count = 0;
	int			stale = 0;
	Datum		args[2];
	Oid			argtypes[2] = {INT8ARRAYOID, INT4ARRAYOID};
	uint64		row;
	int			i;

	for (i = 0; i < n && count < TASKER_MAX_GROUP; i++)
	{
		steps[i].locked = false;
		if (done[i])
			continue;
		candidates[count] = i;
		ids[count] = Int64GetDatum(steps[i].step_id);
		attempts[count++] = Int32GetDatum(steps[i].attempt);
	}
	args[0] = Int8ArrayDatum(ids, count);
	args[1] = PointerGetDatum(construct_array(attempts, count, INT4OID, 4, true, TYPALIGN_INT));
	TaskerSpiExecCached(&lock_plan, "SELECT step_id, release FROM tasker._lock_attempts($1, $2)",
						2, argtypes, args, NULL, SPI_OK_SELECT);
	for (row = 0; row < SPI_processed; row++)
	{
		bool		isnull;
		int64		step_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[row],
														 SPI_tuptable->tupdesc, 1, &isnull));
		bool		release = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[row],
														 SPI_tuptable->tupdesc, 2, &isnull));

		for (i = 0; i < count; i++)
			if (steps[candidates[i]].step_id == step_id)
			{
				steps[candidates[i]].locked = true;
				steps[candidates[i]].release = release;
			}
	}
	for (i = 0; i < count; i++)
		if (!steps[candidates[i]].locked)
		{
			done[candidates[i]] = true;
			stale++;
		}
	return stale;
}

/*
 * RunGroup runs, in one transaction, claimed steps that are not done yet,
 * and marks the ones it ran or found stale; it returns how many.
 * Committing several steps at once spares all but one of their WAL
 * flushes.  Siblings claimed together run in the same group, so that they
 * release their common child and finalize their task in one settlement
 * instead of waiting for each other's commits from two executors.  The
 * group's steps are locked first, in ascending id, and its settlement locks
 * children and tasks in ascending id, as other writers do.  A group ends at
 * tasker.executor_commit_window, so that no step's commit waits long for
 * its neighbours.
 */
static int
RunGroup(ClaimedStep *steps, bool *done, int n)
{
	MemoryContext group_context = CurrentMemoryContext;
	TimestampTz started;
	Settlement	settlement = {0};
	Settlement *pending = NULL;
	int64		tasks[TASKER_MAX_GROUP];
	TimestampTz step_started;
	double		step_ms;
	StepOutcome outcome;
	GroupMode	mode;
	bool		alone = run_alone_next;
	int			ran = 0;
	int			stale = 0;
	int			i;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (!TaskerExtensionInstalled())
	{
		/* DROP EXTENSION came between the claim and the run */
		AbortCurrentTransaction();
		proc_exit(0);
	}
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	started = GetCurrentTimestamp();

	/*
	 * A batch of one step (slow steps, or executor_batch_size 1) has no
	 * neighbour to hold locks for, nor has a step handed back to run alone,
	 * nor a group of one (a commit window of 0): complete_step does it all
	 * in one call.
	 */
	run_alone_next = false;
	mode = CurrentGroupMode();
	if (n > 1 && !alone && tasker_executor_commit_window > 0 && mode != GROUP_STEPWISE)
	{
		pending = &settlement;
		settlement.batched = mode == GROUP_BATCHED;
		if (settlement.batched)
			stale = LockGroup(steps, done, n);
	}
	for (i = 0; i < n && ran < TASKER_MAX_GROUP; i++)
	{
		int			j;

		if (done[i])
			continue;
		if (alone && ran > 0)
			break;
		if (settlement.batched && !steps[i].locked)
			break;				/* beyond what LockGroup took: the next group's */
		/* without a settlement, complete_step finalizes mid-group: one step per task */
		for (j = 0; pending == NULL && j < ran && tasks[j] != steps[i].task_id; j++)
			;
		if (pending == NULL && j < ran)
			continue;
		if (ran > 0 &&
			TimestampDifferenceExceeds(started, GetCurrentTimestamp(),
									   tasker_executor_commit_window))
			break;
		CHECK_FOR_INTERRUPTS();
		MemoryContextSwitchTo(group_context);
		step_started = GetCurrentTimestamp();

		/*
		 * Each step sees what committed before it started and what the
		 * group's earlier steps wrote, as it would in a transaction of its
		 * own (a STABLE handler runs on the active snapshot).
		 */
		CommandCounterIncrement();
		PushActiveSnapshot(GetTransactionSnapshot());
		/* (a batched group's first step holds its neighbours' locks too) */
		outcome = RunStep(&steps[i], ran > 0 || settlement.batched, pending);
		PopActiveSnapshot();
		if (outcome == STEP_RUN_ALONE)
		{
			run_alone_next = true;	/* it is the next group, alone */
			break;
		}
		step_ms = (double) (GetCurrentTimestamp() - step_started) / 1000.0;
		average_step_ms = average_step_ms < 0 ? step_ms : 0.8 * average_step_ms + 0.2 * step_ms;
		done[i] = true;
		tasks[ran++] = steps[i].task_id;
		if (outcome == STEP_ENDS_GROUP)
			break;
	}
	Assert(ran + stale > 0 || run_alone_next);

	if (pending != NULL)
		Settle(pending);
	SPI_finish();
	PopActiveSnapshot();
	pgstat_report_activity(STATE_RUNNING, "tasker executor: committing");
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(group_context);
	return ran + stale;
}

/*
 * TaskerExecutorMain is an executor's entry point; main_arg is the
 * database's oid.
 */
void
TaskerExecutorMain(Datum main_arg)
{
	MemoryContext batch_context;
	TimestampTz idle_since;
	int			running;
	int			i;

	executor_database = DatumGetObjectId(main_arg);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnectionByOid(executor_database, InvalidOid, 0);
	pgstat_report_appname("tasker executor");
	worker_name = MemoryContextStrdup(TopMemoryContext,
									  psprintf("tasker executor %d", (int) MyProcPid));

	/*
	 * Several rounds of the dispatcher may each start an executor before the
	 * first of them registers here: the count under the lock is what keeps
	 * the pool within tasker.max_executors.
	 */
	LWLockAcquire(tasker_shared->lock, LW_EXCLUSIVE);
	running = 0;
	for (i = 0; i < TASKER_MAX_EXECUTORS; i++)
		if (tasker_shared->executors[i].pid != 0 &&
			tasker_shared->executors[i].database_id == executor_database)
			running++;
	for (i = 0; i < TASKER_MAX_EXECUTORS && running < tasker_max_executors; i++)
		if (tasker_shared->executors[i].pid == 0)
		{
			my_slot = &tasker_shared->executors[i];
			memset(my_slot, 0, sizeof(*my_slot));
			my_slot->pid = MyProcPid;
			my_slot->database_id = executor_database;
			my_slot->latch = MyLatch;
			my_slot->since = GetCurrentTimestamp();
			break;
		}
	LWLockRelease(tasker_shared->lock);
	if (my_slot == NULL)
		proc_exit(0);			/* the pool is full: back-pressure */
	before_shmem_exit(ExecutorShutdown, (Datum) 0);

	batch_context = AllocSetContextCreate(TopMemoryContext, "tasker executor batch",
										  ALLOCSET_DEFAULT_SIZES);
	idle_since = GetCurrentTimestamp();

	for (;;)
	{
		ClaimedStep *steps = NULL;
		bool	   *done;
		int			n;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (!tasker_enabled)
			proc_exit(0);

		ResetLatch(MyLatch);
		MemoryContextReset(batch_context);
		MemoryContextSwitchTo(batch_context);

		n = ClaimBatch(batch_context, &steps);
		if (n < 0)
			proc_exit(0);		/* extension dropped */
		if (n == 0)
		{
			long		idle_ms;

			SetSlotStep(0, InvalidOid, true);
			idle_ms = TimestampDifferenceMilliseconds(idle_since, GetCurrentTimestamp());
			if (idle_ms >= tasker_executor_idle_timeout)
				proc_exit(0);
			pgstat_report_stat(true);
			/* (pg_stat_activity would show it "claiming" while it waits) */
			pgstat_report_activity(STATE_IDLE, NULL);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 tasker_executor_idle_timeout - idle_ms, PG_WAIT_EXTENSION);
			continue;
		}

		done = MemoryContextAllocZero(batch_context, sizeof(bool) * n);
		for (i = 0; i < n;)
		{
			CHECK_FOR_INTERRUPTS();

			/*
			 * A commit leaves TopMemoryContext current: what RunGroup
			 * allocates outside its transaction (activity strings, the
			 * errors it caught) must go to the batch's context, which is
			 * reset, or every step leaks it.
			 */
			MemoryContextSwitchTo(batch_context);
			i += RunGroup(steps, done, n);
			/* a worker sends its own table statistics (autovacuum needs them) */
			pgstat_report_stat(false);
		}
		idle_since = GetCurrentTimestamp();
	}
}
