/*-------------------------------------------------------------------------
 * utility_hook.c
 *	  DROP DATABASE of a database that tasker serves: stop its dispatcher
 *	  and executors first, so the drop does not find them connected.
 *
 * Only a drop that can succeed stops them: one refused for want of
 * ownership, inside a transaction block, or of the current database would
 * otherwise interrupt the steps they run and keep the database unserved
 * for a while, at the request of any role.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/acl.h"

#include "workers.h"

static ProcessUtility_hook_type prev_process_utility = NULL;

static void
TaskerProcessUtility(PlannedStmt *pstmt, const char *queryString,
					 bool readOnlyTree, ProcessUtilityContext context,
					 ParamListInfo params, QueryEnvironment *queryEnv,
					 DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;

	if (IsA(parsetree, DropdbStmt))
	{
		Oid			database_id = get_database_oid(((DropdbStmt *) parsetree)->dbname, true);

		/* the same refusal standard_ProcessUtility would raise, before any harm */
		PreventInTransactionBlock(context == PROCESS_UTILITY_TOPLEVEL, "DROP DATABASE");
		if (OidIsValid(database_id) && database_id != MyDatabaseId &&
			pg_database_ownercheck(database_id, GetUserId()))
			TaskerRequestDatabaseStop(database_id);
	}

	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params,
							 queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}

/*
 * TaskerInstallUtilityHook installs the hook (preload only).
 */
void
TaskerInstallUtilityHook(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = TaskerProcessUtility;
}
