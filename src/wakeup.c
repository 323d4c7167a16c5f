/*-------------------------------------------------------------------------
 * wakeup.c
 *	  Wake the database's dispatcher after commit when a transaction made
 *	  steps ready, so that no polling tick sits on the critical path.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"

#include "tasker.h"
#include "wakeup.h"

static bool wake_requested = false;
static bool callback_registered = false;

/*
 * WakeupXactCallback sets the dispatcher's latch once the work is visible.
 */
static void
WakeupXactCallback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_requested)
				TaskerSignalDispatcher(MyDatabaseId);
			wake_requested = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_requested = false;
			break;
		default:
			break;
	}
}

/*
 * TaskerRequestWakeup asks for the dispatcher to be woken at commit.
 */
void
TaskerRequestWakeup(void)
{
	if (!callback_registered)
	{
		RegisterXactCallback(WakeupXactCallback, NULL);
		callback_registered = true;
	}
	wake_requested = true;
}

PG_FUNCTION_INFO_V1(tasker_wake_dispatcher);

/*
 * tasker_wake_dispatcher is tasker._wake_dispatcher(): called by the API
 * functions whenever they make a step ready.
 */
Datum
tasker_wake_dispatcher(PG_FUNCTION_ARGS)
{
	TaskerRequestWakeup();
	PG_RETURN_VOID();
}
