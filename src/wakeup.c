/*-------------------------------------------------------------------------
 * wakeup.c
 *	  Wake the database's dispatcher (or the launcher) after commit, when a
 *	  transaction made steps ready (or installed tasker), so that no
 *	  polling tick sits on the critical path.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"

#include "tasker.h"
#include "wakeup.h"
#include "workers.h"

static bool dispatcher_wake_requested = false;
static bool launcher_wake_requested = false;
static bool callback_registered = false;

/*
 * WakeupXactCallback sets the latches once the work is visible.
 */
static void
WakeupXactCallback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (dispatcher_wake_requested)
				TaskerSignalDispatcher(MyDatabaseId);
			if (launcher_wake_requested)
			{
				TaskerNoteExtensionCreated(MyDatabaseId);
				TaskerWakeLauncher();
			}
			dispatcher_wake_requested = false;
			launcher_wake_requested = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			dispatcher_wake_requested = false;
			launcher_wake_requested = false;
			break;
		default:
			break;
	}
}

static void
RegisterCallbackOnce(void)
{
	if (!callback_registered)
	{
		RegisterXactCallback(WakeupXactCallback, NULL);
		callback_registered = true;
	}
}

/*
 * TaskerRequestWakeup asks for the dispatcher to be woken at commit.
 */
void
TaskerRequestWakeup(void)
{
	if (tasker_shared == NULL)
		return;
	RegisterCallbackOnce();
	dispatcher_wake_requested = true;
}

/*
 * TaskerRequestLauncherWakeup asks for the launcher to be woken at commit.
 */
void
TaskerRequestLauncherWakeup(void)
{
	if (tasker_shared == NULL)
		return;
	RegisterCallbackOnce();
	launcher_wake_requested = true;
}

PG_FUNCTION_INFO_V1(tasker_wake_dispatcher);

/*
 * tasker_wake_dispatcher is tasker._wake_dispatcher(): called by the API
 * functions whenever they make a SQL-handler step ready.
 */
Datum
tasker_wake_dispatcher(PG_FUNCTION_ARGS)
{
	TaskerRequestWakeup();
	PG_RETURN_VOID();
}
