/*-------------------------------------------------------------------------
 * utility_hook.c
 *	  DROP DATABASE of a database that tasker serves: stop its dispatcher
 *	  and executors first, so the drop does not find them connected.
 *	  ALTER EXTENSION tasker UPDATE: wait for the workers' transactions
 *	  and hold off new ones until the update commits, so no worker
 *	  transaction mixes the functions of two versions.
 *
 * Only a drop that can succeed stops them: one refused for want of
 * ownership, inside a transaction block, or of the current database would
 * otherwise interrupt the steps they run and keep the database unserved
 * for a while, at the request of any role.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/lmgr.h"
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
	else if (IsA(parsetree, AlterExtensionStmt) &&
			 strcmp(((AlterExtensionStmt *) parsetree)->extname, "tasker") == 0)
	{
		Oid			extension = get_extension_oid("tasker", true);

		/*
		 * Workers take this lock in share mode per transaction (see
		 * TaskerExtensionInstalled).  Only the owner may block them.
		 */
		if (OidIsValid(extension) && pg_extension_ownercheck(extension, GetUserId()))
			LockDatabaseObject(ExtensionRelationId, extension, 0, AccessExclusiveLock);
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
