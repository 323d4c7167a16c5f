/*-------------------------------------------------------------------------
 * launcher.c
 *	  The launcher: one per cluster.  It lists the databases, keeps one
 *	  dispatcher running in each that has the extension, and restarts a
 *	  dispatcher that stopped.  It never waits on a dispatcher: starts and
 *	  exits are noticed through the handle on the next turn of the loop.
 *
 * A dispatcher that finds no tasker in its database says so in shared
 * memory and exits; the launcher then looks again every
 * NO_EXTENSION_RECHECK_MS, or at once when CREATE EXTENSION wakes it.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "tasker.h"
#include "workers.h"

#define NO_EXTENSION_RECHECK_MS 10000
#define RESTART_DELAY_MS 1000
#define LAUNCHER_NAPTIME_MS 1000

typedef struct KnownDatabase
{
	Oid			database_id;
	BackgroundWorkerHandle *handle;
	TimestampTz next_start;
	bool		listed;
} KnownDatabase;

static KnownDatabase known[TASKER_MAX_DATABASES];
static int	n_known = 0;
static bool warned_too_many = false;

/*
 * TaskerRegisterLauncher registers the static launcher (preload only).
 */
void
TaskerRegisterLauncher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "tasker");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "TaskerLauncherMain");
	snprintf(worker.bgw_name, BGW_MAXLEN, "tasker launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "tasker launcher");
	RegisterBackgroundWorker(&worker);
}

/*
 * TaskerStartDispatcher asks the postmaster for a dispatcher in the
 * database; false when no worker slot is free.
 */
bool
TaskerStartDispatcher(Oid database_id, void **handle)
{
	BackgroundWorker worker;
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	bool		ok;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "tasker");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "TaskerDispatcherMain");
	snprintf(worker.bgw_name, BGW_MAXLEN, "tasker dispatcher for database %u", database_id);
	snprintf(worker.bgw_type, BGW_MAXLEN, "tasker dispatcher");
	worker.bgw_main_arg = ObjectIdGetDatum(database_id);
	worker.bgw_notify_pid = MyProcPid;
	ok = RegisterDynamicBackgroundWorker(&worker, (BackgroundWorkerHandle **) handle);
	MemoryContextSwitchTo(old);
	return ok;
}

static KnownDatabase *
Remember(Oid database_id)
{
	int			i;

	for (i = 0; i < n_known; i++)
		if (known[i].database_id == database_id)
			return &known[i];
	if (n_known >= TASKER_MAX_DATABASES)
	{
		if (!warned_too_many)
			ereport(WARNING,
					(errmsg("tasker launcher serves at most %d databases", TASKER_MAX_DATABASES)));
		warned_too_many = true;
		return NULL;
	}
	memset(&known[n_known], 0, sizeof(KnownDatabase));
	known[n_known].database_id = database_id;
	return &known[n_known++];
}

/*
 * ListDatabases marks every database that accepts connections as listed
 * (read from the shared catalog pg_database; the launcher is bound to no
 * database).
 */
static void
ListDatabases(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	int			i;

	for (i = 0; i < n_known; i++)
		known[i].listed = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		KnownDatabase *entry;

		if (!db->datallowconn || db->datistemplate)
			continue;
		entry = Remember(db->oid);
		if (entry != NULL)
			entry->listed = true;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
}

/*
 * ServeDatabases starts a dispatcher wherever one is due and notes the
 * ones that stopped.
 */
static void
ServeDatabases(void)
{
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	for (i = 0; i < n_known; i++)
	{
		KnownDatabase *entry = &known[i];
		TaskerDatabaseSlot *slot;
		bool		no_extension = false;
		TimestampTz checked_at = 0;
		TimestampTz stop_until = 0;
		pid_t		pid;

		if (entry->handle != NULL &&
			GetBackgroundWorkerPid(entry->handle, &pid) == BGWH_STOPPED)
		{
			pfree(entry->handle);
			entry->handle = NULL;
			entry->next_start = TimestampTzPlusMilliseconds(now, RESTART_DELAY_MS);
		}
		if (entry->handle != NULL || !entry->listed)
			continue;

		LWLockAcquire(tasker_shared->lock, LW_SHARED);
		slot = TaskerFindDatabaseSlot(entry->database_id, false);
		if (slot != NULL)
		{
			no_extension = slot->no_extension;
			checked_at = slot->dispatcher_since;
			stop_until = slot->stop_until;
		}
		LWLockRelease(tasker_shared->lock);

		if (stop_until > now)
			continue;
		if (no_extension)
		{
			/* CREATE EXTENSION clears the flag; else look again now and then */
			if (now < TimestampTzPlusMilliseconds(checked_at, NO_EXTENSION_RECHECK_MS))
				continue;
		}
		else if (now < entry->next_start)
			continue;

		if (!TaskerStartDispatcher(entry->database_id, (void **) &entry->handle))
		{
			/* no free worker slot: back-pressure, try again later */
			entry->handle = NULL;
			entry->next_start = TimestampTzPlusMilliseconds(now, RESTART_DELAY_MS);
			ereport(DEBUG1,
					(errmsg("tasker launcher could not start a dispatcher for database %u",
							entry->database_id)));
		}
	}

	/* forget databases that are gone */
	for (i = 0; i < n_known;)
	{
		if (!known[i].listed && known[i].handle == NULL)
		{
			LWLockAcquire(tasker_shared->lock, LW_EXCLUSIVE);
			{
				TaskerDatabaseSlot *slot = TaskerFindDatabaseSlot(known[i].database_id, false);

				if (slot != NULL && slot->dispatcher_pid == 0)
					slot->database_id = InvalidOid;
			}
			LWLockRelease(tasker_shared->lock);
			known[i] = known[--n_known];
		}
		else
			i++;
	}
}

static void
LauncherShutdown(int code, Datum arg)
{
	if (tasker_shared == NULL)
		return;
	LWLockAcquire(tasker_shared->lock, LW_EXCLUSIVE);
	tasker_shared->launcher_pid = 0;
	tasker_shared->launcher_latch = NULL;
	LWLockRelease(tasker_shared->lock);
}

/*
 * TaskerLauncherMain is the launcher's entry point.
 */
void
TaskerLauncherMain(Datum main_arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("tasker launcher");

	LWLockAcquire(tasker_shared->lock, LW_EXCLUSIVE);
	tasker_shared->launcher_pid = MyProcPid;
	tasker_shared->launcher_latch = MyLatch;
	tasker_shared->launcher_since = GetCurrentTimestamp();
	LWLockRelease(tasker_shared->lock);
	before_shmem_exit(LauncherShutdown, (Datum) 0);

	ereport(LOG, (errmsg("tasker launcher started")));

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		ResetLatch(MyLatch);

		ListDatabases();
		ServeDatabases();

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 LAUNCHER_NAPTIME_MS, PG_WAIT_EXTENSION);
	}
}
