/*-------------------------------------------------------------------------
 * dispatcher.c
 *	  The dispatcher: one per database with tasker.  It wakes on its latch
 *	  (set at commit by any call that made SQL-handler steps ready) or on
 *	  tasker.poll_interval, and then: reaps expired leases, recovers steps
 *	  left in progress by executors that are gone (all of them after a
 *	  crash), tells external queues about retries whose backoff has passed,
 *	  and sizes the executor pool with the dynamic concurrency figure.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "spi_util.h"
#include "tasker.h"
#include "workers.h"

static Oid	dispatcher_database = InvalidOid;
static TaskerDatabaseSlot *my_slot = NULL;
static TimestampTz last_housekeeping = 0;

static void
DispatcherShutdown(int code, Datum arg)
{
	TaskerDatabaseSlot *slot;

	LWLockAcquire(tasker_shared->lock, LW_EXCLUSIVE);
	slot = TaskerFindDatabaseSlot(dispatcher_database, false);
	if (slot != NULL && slot->dispatcher_pid == MyProcPid)
	{
		slot->dispatcher_pid = 0;
		slot->dispatcher_latch = NULL;
	}
	LWLockRelease(tasker_shared->lock);
}

/*
 * LiveExecutorNames lists "tasker executor <pid>" for every executor of
 * this database that is registered in shared memory: the claimed_by of
 * the steps they hold.
 */
static ArrayType *
LiveExecutorNames(void)
{
	Datum		names[TASKER_MAX_EXECUTORS];
	int			n = 0;
	int			i;

	LWLockAcquire(tasker_shared->lock, LW_SHARED);
	for (i = 0; i < TASKER_MAX_EXECUTORS; i++)
	{
		TaskerExecutorSlot *slot = &tasker_shared->executors[i];

		if (slot->pid != 0 && slot->database_id == dispatcher_database)
			names[n++] = CStringGetTextDatum(psprintf("tasker executor %d", (int) slot->pid));
	}
	LWLockRelease(tasker_shared->lock);
	return construct_array(names, n, TEXTOID, -1, false, TYPALIGN_INT);
}

/*
 * ExtensionEpoch reads how many CREATE EXTENSIONs of this database have
 * committed; read before looking for the extension, it says whether the
 * look is still current after it.
 */
static uint32
ExtensionEpoch(void)
{
	uint32		epoch;

	LWLockAcquire(tasker_shared->lock, LW_SHARED);
	epoch = my_slot->extension_epoch;
	LWLockRelease(tasker_shared->lock);
	return epoch;
}

/*
 * NoteExtension records for the launcher whether this database has tasker.
 * "No" stands only if no CREATE EXTENSION committed since the look began;
 * otherwise the launcher starts a new dispatcher after its usual restart
 * delay instead of waiting for its next look at databases without tasker.
 */
static void
NoteExtension(bool installed, uint32 epoch_before_look)
{
	LWLockAcquire(tasker_shared->lock, LW_EXCLUSIVE);
	my_slot->no_extension = !installed && my_slot->extension_epoch == epoch_before_look;
	LWLockRelease(tasker_shared->lock);
}

/*
 * DispatchOnce does one round of housekeeping and returns how many SQL
 * steps are ready now and, in *next_due_ms, when the next backing-off one
 * comes due (-1: none).
 */
static int
DispatchOnce(long *next_due_ms)
{
	TimestampTz now = GetCurrentTimestamp();
	int			ready = 0;
	Datum		args[4];
	Oid			argtypes[4] = {TEXTARRAYOID, TIMESTAMPTZOID, BOOLOID, TIMESTAMPTZOID};
	bool		isnull;
	bool		housekeeping;
	bool		outgrown;

	*next_due_ms = -1;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "tasker dispatcher: housekeeping");

	if (!TaskerExtensionInstalled())
	{
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		return -1;
	}

	/* housekeeping lost in a crash is redone after it */
	(void) set_config_option("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	/* wake-ups at every commit only look for work; the rest once per poll */
	housekeeping = now >= TimestampTzPlusMilliseconds(last_housekeeping, tasker_poll_interval);
	/*
	 * An executor registers before it claims: one that is missing from the
	 * list read now made its claims later than this moment, and those are
	 * not orphans.
	 */
	args[3] = TimestampTzGetDatum(GetCurrentTimestamp());
	args[0] = PointerGetDatum(LiveExecutorNames());
	args[1] = TimestampTzGetDatum(last_housekeeping);
	args[2] = BoolGetDatum(housekeeping);
	TaskerSpiExec("SELECT * FROM tasker._dispatcher_tick($1, $2, $3, $4)", 4, argtypes, args,
				  NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		Datum		d;

		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		ready = isnull ? 0 : DatumGetInt32(d);
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		if (!isnull)
			*next_due_ms = Max(0, (long) DatumGetFloat8(d));
	}
	if (housekeeping)
		last_housekeeping = now;

	if (ready > 0)
	{
		int			target = Min(TaskerCurrentConcurrency(), tasker_max_executors);
		int			running = TaskerCountExecutors(dispatcher_database);
		int			wanted = Min(ready, target);
		int			i;

		TaskerWakeIdleExecutors(dispatcher_database, Min(ready, running));
		for (i = running; i < wanted; i++)
		{
			if (!TaskerStartExecutor(dispatcher_database))
			{
				/* no free worker slot: back-pressure, not an error */
				ereport(DEBUG1, (errmsg("tasker dispatcher could not start an executor")));
				break;
			}
		}
	}

	outgrown = TaskerStepsOutgrewStatistics();
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	if (outgrown)
		TaskerAnalyzeTables();
	return ready;
}

/*
 * TaskerDispatcherMain is the dispatcher's entry point; main_arg is the
 * database's oid.
 */
void
TaskerDispatcherMain(Datum main_arg)
{
	TaskerDatabaseSlot *slot;
	MemoryContext loop_context;
	bool		installed;
	uint32		epoch;

	dispatcher_database = DatumGetObjectId(main_arg);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnectionByOid(dispatcher_database, InvalidOid, 0);
	pgstat_report_appname("tasker dispatcher");

	LWLockAcquire(tasker_shared->lock, LW_EXCLUSIVE);
	slot = TaskerFindDatabaseSlot(dispatcher_database, true);
	if (slot == NULL || (slot->dispatcher_pid != 0 && slot->dispatcher_pid != MyProcPid))
	{
		LWLockRelease(tasker_shared->lock);
		proc_exit(0);			/* another one serves this database */
	}
	slot->dispatcher_pid = MyProcPid;
	slot->dispatcher_latch = MyLatch;
	slot->dispatcher_since = GetCurrentTimestamp();
	epoch = slot->extension_epoch;
	LWLockRelease(tasker_shared->lock);
	my_slot = slot;
	before_shmem_exit(DispatcherShutdown, (Datum) 0);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	installed = TaskerExtensionInstalled();
	CommitTransactionCommand();
	NoteExtension(installed, epoch);
	if (!installed)
		proc_exit(0);

	ereport(LOG, (errmsg("tasker dispatcher started")));
	loop_context = AllocSetContextCreate(TopMemoryContext, "tasker dispatcher loop",
										 ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		long		next_due_ms = -1;
		long		timeout = tasker_poll_interval;
		int			ready = 0;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		ResetLatch(MyLatch);
		MemoryContextReset(loop_context);
		MemoryContextSwitchTo(loop_context);

		if (tasker_enabled)
		{
			epoch = ExtensionEpoch();
			PG_TRY();
			{
				ready = DispatchOnce(&next_due_ms);
			}
			PG_CATCH();
			{
				/* one bad round never takes the dispatcher down */
				MemoryContextSwitchTo(loop_context);
				EmitErrorReport();
				FlushErrorState();
				AbortCurrentTransaction();
				ready = 0;
			}
			PG_END_TRY();
			if (ready < 0)
			{
				/* DROP EXTENSION: nothing left to serve here */
				NoteExtension(false, epoch);
				/* idle executors notice it when they next try to claim */
				TaskerWakeIdleExecutors(dispatcher_database, TASKER_MAX_EXECUTORS);
				ereport(LOG, (errmsg("tasker dispatcher stopping: extension dropped")));
				proc_exit(0);
			}
			if (next_due_ms >= 0)
				timeout = Min(timeout, next_due_ms + 1);
		}

		/* a worker sends its own table statistics (autovacuum needs them) */
		pgstat_report_stat(false);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
	}
}
