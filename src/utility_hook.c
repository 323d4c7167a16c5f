/*-------------------------------------------------------------------------
 * utility_hook.c
 *	  DROP DATABASE of a database that tasker serves: stop its dispatcher
 *	  and executors first, so the drop does not find them connected.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"

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

		if (OidIsValid(database_id))
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
