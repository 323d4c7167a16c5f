/*-------------------------------------------------------------------------
 * shmem.c
 *	  Shared state of the background workers: who runs where, and the
 *	  latches that wake them.  Also the tasker.workers listing.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "tasker.h"
#include "wakeup.h"
#include "workers.h"

TaskerShared *tasker_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
TaskerShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(TaskerShared)));
	RequestNamedLWLockTranche("tasker", 1);
}

static void
TaskerShmemStartup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	tasker_shared = ShmemInitStruct("tasker", sizeof(TaskerShared), &found);
	if (!found)
	{
		memset(tasker_shared, 0, sizeof(TaskerShared));
		tasker_shared->lock = &(GetNamedLWLockTranche("tasker"))->lock;
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * TaskerInstallShmemHooks asks for the shared state (preload only).
 */
void
TaskerInstallShmemHooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = TaskerShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = TaskerShmemStartup;
}

/*
 * TaskerFindDatabaseSlot returns the database's slot, taking a free one
 * when create is set.  The caller holds tasker_shared->lock exclusively
 * when create is set, at least shared otherwise.
 */
TaskerDatabaseSlot *
TaskerFindDatabaseSlot(Oid database_id, bool create)
{
	int			i;
	TaskerDatabaseSlot *free_slot = NULL;

	for (i = 0; i < TASKER_MAX_DATABASES; i++)
	{
		TaskerDatabaseSlot *slot = &tasker_shared->databases[i];

		if (slot->database_id == database_id)
			return slot;
		if (slot->database_id == InvalidOid && free_slot == NULL)
			free_slot = slot;
	}
	if (create && free_slot != NULL)
	{
		memset(free_slot, 0, sizeof(*free_slot));
		free_slot->database_id = database_id;
		return free_slot;
	}
	return NULL;
}

/*
 * CountExecutorsLocked counts the executors registered for a database and
 * says whether any of them is idle; the caller holds tasker_shared->lock.
 */
static int
CountExecutorsLocked(Oid database_id, bool *any_idle)
{
	int			n = 0;
	int			i;

	*any_idle = false;
	for (i = 0; i < TASKER_MAX_EXECUTORS; i++)
	{
		TaskerExecutorSlot *executor = &tasker_shared->executors[i];

		if (executor->pid != 0 && executor->database_id == database_id)
		{
			n++;
			*any_idle |= executor->idle;
		}
	}
	return n;
}

/*
 * TaskerSignalDispatcher sets the latch of the database's dispatcher (called
 * at commit by any transaction that made SQL-handler steps ready).
 *
 * When the pool is full and no executor is idle, the dispatcher could only
 * count the ready steps and find nothing to start: the busy executors claim
 * them when they loop.  Under a DAG load that is most commits, and each round
 * is a transaction; so the dispatcher is left asleep then (it still wakes at
 * its poll interval, and at the next signal once an executor idles or exits).
 */
void
TaskerSignalDispatcher(Oid database_id)
{
	TaskerDatabaseSlot *slot;
	int			running;
	bool		any_idle;

	if (tasker_shared == NULL)
		return;
	LWLockAcquire(tasker_shared->lock, LW_SHARED);
	running = CountExecutorsLocked(database_id, &any_idle);
	slot = TaskerFindDatabaseSlot(database_id, false);
	if (slot != NULL && slot->dispatcher_latch != NULL &&
		(running < tasker_max_executors || any_idle))
		SetLatch(slot->dispatcher_latch);
	LWLockRelease(tasker_shared->lock);

	/* an idle executor can start at once, without a round trip */
	TaskerWakeIdleExecutors(database_id, 1);
}

/*
 * TaskerWakeLauncher sets the launcher's latch.
 */
void
TaskerWakeLauncher(void)
{
	if (tasker_shared == NULL)
		return;
	LWLockAcquire(tasker_shared->lock, LW_SHARED);
	if (tasker_shared->launcher_latch != NULL)
		SetLatch(tasker_shared->launcher_latch);
	LWLockRelease(tasker_shared->lock);
}

/*
 * TaskerNoteExtensionCreated tells the launcher, once CREATE EXTENSION has
 * committed, that the database has tasker now.  It runs at commit, not in
 * the install script: a dispatcher that looked before the commit would
 * otherwise mark the database as without tasker after the mark was cleared.
 * The epoch tells such a dispatcher that its look is out of date.
 */
void
TaskerNoteExtensionCreated(Oid database_id)
{
	TaskerDatabaseSlot *slot;

	if (tasker_shared == NULL)
		return;
	LWLockAcquire(tasker_shared->lock, LW_EXCLUSIVE);
	slot = TaskerFindDatabaseSlot(database_id, false);
	if (slot != NULL)
	{
		slot->no_extension = false;
		slot->extension_epoch++;
	}
	LWLockRelease(tasker_shared->lock);
}

/*
 * TaskerWakeIdleExecutors sets the latches of up to how_many idle executors
 * of the database.
 */
void
TaskerWakeIdleExecutors(Oid database_id, int how_many)
{
	int			i;

	if (tasker_shared == NULL)
		return;
	LWLockAcquire(tasker_shared->lock, LW_SHARED);
	for (i = 0; i < TASKER_MAX_EXECUTORS && how_many > 0; i++)
	{
		TaskerExecutorSlot *slot = &tasker_shared->executors[i];

		if (slot->pid != 0 && slot->database_id == database_id && slot->idle &&
			slot->latch != NULL)
		{
			SetLatch(slot->latch);
			how_many--;
		}
	}
	LWLockRelease(tasker_shared->lock);
}

/*
 * TaskerCountExecutors counts the executors registered for a database.
 */
int
TaskerCountExecutors(Oid database_id)
{
	int			n;
	bool		any_idle;

	LWLockAcquire(tasker_shared->lock, LW_SHARED);
	n = CountExecutorsLocked(database_id, &any_idle);
	LWLockRelease(tasker_shared->lock);
	return n;
}

/*
 * TaskerRequestDatabaseStop makes the database's dispatcher and executors
 * exit and keeps the launcher from restarting them for a while, so that
 * DROP DATABASE finds no one connected.
 */
void
TaskerRequestDatabaseStop(Oid database_id)
{
	TaskerDatabaseSlot *slot;
	int			i;

	if (tasker_shared == NULL)
		return;
	LWLockAcquire(tasker_shared->lock, LW_EXCLUSIVE);
	slot = TaskerFindDatabaseSlot(database_id, true);
	if (slot != NULL)
	{
		slot->stop_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 10000);
		if (slot->dispatcher_pid != 0)
			kill(slot->dispatcher_pid, SIGTERM);
	}
	for (i = 0; i < TASKER_MAX_EXECUTORS; i++)
	{
		TaskerExecutorSlot *ex = &tasker_shared->executors[i];

		if (ex->pid != 0 && ex->database_id == database_id)
			kill(ex->pid, SIGTERM);
	}
	LWLockRelease(tasker_shared->lock);
}

PG_FUNCTION_INFO_V1(tasker_wake_launcher);

/*
 * tasker_wake_launcher is tasker._wake_launcher(): CREATE EXTENSION calls it
 * so that the database gets its dispatcher at once, after commit (see
 * TaskerNoteExtensionCreated).
 */
Datum
tasker_wake_launcher(PG_FUNCTION_ARGS)
{
	TaskerRequestLauncherWakeup();
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(tasker_worker_list);

/*
 * tasker_worker_list returns one row per running tasker worker: pid,
 * database oid, kind, role, step being run, since.
 */
Datum
tasker_worker_list(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (tasker_shared == NULL)
		return (Datum) 0;

	LWLockAcquire(tasker_shared->lock, LW_SHARED);
	if (tasker_shared->launcher_pid != 0)
	{
		Datum		values[6];
		bool		nulls[6] = {false, true, false, true, true, false};

		values[0] = Int32GetDatum(tasker_shared->launcher_pid);
		values[2] = CStringGetTextDatum("launcher");
		values[5] = TimestampTzGetDatum(tasker_shared->launcher_since);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	for (i = 0; i < TASKER_MAX_DATABASES; i++)
	{
		TaskerDatabaseSlot *slot = &tasker_shared->databases[i];
		Datum		values[6];
		bool		nulls[6] = {false, false, false, true, true, false};

		if (slot->database_id == InvalidOid || slot->dispatcher_pid == 0)
			continue;
		values[0] = Int32GetDatum(slot->dispatcher_pid);
		values[1] = ObjectIdGetDatum(slot->database_id);
		values[2] = CStringGetTextDatum("dispatcher");
		values[5] = TimestampTzGetDatum(slot->dispatcher_since);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	for (i = 0; i < TASKER_MAX_EXECUTORS; i++)
	{
		TaskerExecutorSlot *slot = &tasker_shared->executors[i];
		Datum		values[6];
		bool		nulls[6] = {false, false, false, false, false, false};

		if (slot->pid == 0)
			continue;
		values[0] = Int32GetDatum(slot->pid);
		values[1] = ObjectIdGetDatum(slot->database_id);
		values[2] = CStringGetTextDatum("executor");
		values[3] = ObjectIdGetDatum(slot->role_id);
		nulls[3] = slot->role_id == InvalidOid;
		values[4] = Int64GetDatum(slot->step_id);
		nulls[4] = slot->step_id == 0;
		values[5] = TimestampTzGetDatum(slot->since);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(tasker_shared->lock);
	return (Datum) 0;
}
